"""The `fish-classifier` command line.

    fish-classifier predict PATH... --out predictions.csv
    fish-classifier repro --jobs 2
    fish-classifier feedback list --status new --sheet new.png
    fish-classifier feedback accept ID... | reject --all-new | export OUT_DIR

Each command is a subparser with a `run(args) -> exit code` function, so a new
command is one more `_add_<name>` function (the feedback commands' live in feedback.py; the exit codes in
errors.py). Exit codes: 0 when the command ran
(even if some images were unreadable: they get an `error` row), 1 when the CSV could not be finished (a full
disk, a reader gone), 2 on usage errors, 130 on Ctrl-C and 143 on `kill` (SIGTERM), which clean up alike.
"""

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path

from fish_classifier.cli.errors import INTERRUPTED, TERMINATED, WRITE_FAILED, usage_error
from fish_classifier.cli.feedback import add_feedback
from fish_classifier.cli.predictions_csv import OutputError, PredictionsCsv
from fish_classifier.images import IMAGE_EXTENSIONS, is_image_file
from fish_classifier.serving.bundle import DEFAULT_BUNDLE_DIR
from fish_classifier.serving.prediction_row import readable



class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs (the CSV's hidden partial file removed)."""


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _sigterm_raises_terminated():
            return args.run(args)
    except Terminated:
        print("fish-classifier: terminated", file=sys.stderr)
        return TERMINATED
    except KeyboardInterrupt:
        print("fish-classifier: interrupted", file=sys.stderr)
        return INTERRUPTED


@contextlib.contextmanager
def _sigterm_raises_terminated():
    """Within the block, SIGTERM raises Terminated instead of ending the process on the spot; the handler
    before it is back afterwards. Only the main thread may set a handler: elsewhere SIGTERM is left as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminated(signum, frame):
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fish-classifier", description="Fish-species image classifier.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('fish-classifier')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_predict(commands)
    _add_repro(commands)
    add_feedback(commands)
    return parser


def _add_predict(commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="classify image files and folders into a CSV",
        description=f"Classify images (folders are searched recursively for {', '.join(IMAGE_EXTENSIONS)}) "
        "with the deploy bundle and write one CSV row per image. The CSV appears (or replaces the old one) "
        "only once every image is done. Cells a spreadsheet would run as a formula (a photo named =...) "
        "start with a ' and bytes of a file name that are not UTF-8 show as \\xff.",
    )
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    predict.add_argument("--out", default="predictions.csv",
                         help="CSV file to write (default: %(default)s); what exists and is not a regular file "
                         "(/dev/stdout, /dev/null, a named pipe, >(cmd)) is written into as a stream, never replaced")
    predict.add_argument("--bundle", default=str(DEFAULT_BUNDLE_DIR), help="deploy bundle folder (default: %(default)s)")
    predict.add_argument("--top-k", type=_positive_int, help="classes per image (default: the bundle's, select.top_k)")
    predict.add_argument("--batch-size", type=_positive_int, default=32, help="images per call (default: %(default)s)")
    predict.add_argument("--threshold", type=_probability, help="low-confidence threshold (default: the bundle's)")
    predict.add_argument("--timings", action="store_true",
                         help="also print where the time went: loading, decoding, resizing, the model, the CSV")
    predict.set_defaults(run=run_predict)


def run_predict(args) -> int:
    from fish_classifier.serving.bundle import BundleError

    started = time.perf_counter()
    missing = [readable(p) for p in args.paths if not Path(p).exists()]
    if missing:
        return usage_error(f"no such file or folder: {', '.join(missing)}")
    unreadable_folders = []
    images = collect_images(args.paths, unreadable_folders)
    for folder, why in unreadable_folders:
        print(f"fish-classifier: warning: cannot read the folder {readable(folder)} ({why}); its images are left out",
              file=sys.stderr)
    if not images:
        return usage_error(f"no images found in {', '.join(map(readable, args.paths))} "
                            f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
    out = Path(args.out)
    if out.is_dir():
        return usage_error(f"--out {readable(args.out)} is a folder; give the CSV file to write, "
                            f"e.g. {readable(str(out / 'predictions.csv'))}")
    if out.resolve() in {Path(image).resolve() for image in images}:
        return usage_error(f"--out {readable(args.out)} is one of the input images; write the CSV elsewhere")

    from tqdm import tqdm

    from fish_classifier.serving.predictor import Predictor, Timings

    load_start = time.perf_counter()
    try:  # the Predictor reads and checks the bundle before it loads a model (and TensorFlow, for model.keras)
        predictor = Predictor(args.bundle, batch_size=args.batch_size)
    except BundleError as exc:
        return usage_error(str(exc))
    loading = time.perf_counter() - load_start

    low, unknown, failed = 0, 0, 0
    timings, writing = Timings(), 0.0
    try:  # opened after the slow load, so that a named pipe's reader does not wait on it
        csv_out = PredictionsCsv(out)
    except OutputError as exc:
        return usage_error(str(exc))
    try:
        with csv_out, tqdm(total=len(images), desc="predict", unit="img") as bar:
            for prediction in predictor.iter_predict(images, top_k=args.top_k, threshold=args.threshold,
                                                     timings=timings):
                start = time.perf_counter()
                csv_out.write(prediction)
                writing += time.perf_counter() - start
                low += bool(prediction.is_low_confidence)
                unknown += prediction.is_unknown
                failed += prediction.error is not None
                bar.update()
            csv_out.commit()
    except OutputError as exc:
        print(f"fish-classifier: error: {exc}", file=sys.stderr)
        return WRITE_FAILED
    folders = len(unreadable_folders)
    skipped = f", {folders} folder{'s' * (folders > 1)} unreadable" if folders else ""
    print(f"wrote {len(images)} predictions to {readable(str(out))} "
          f"({unknown} unknown, {low} low-confidence, {failed} unreadable{skipped})", file=sys.stderr)
    if args.timings:
        print(_timings_line(timings, loading=loading, writing=writing, total=time.perf_counter() - started),
              file=sys.stderr)
    return 0


def _timings_line(timings, *, loading: float, writing: float, total: float) -> str:
    """One line on where `predict` spent its time: the main thread's steps, which add up to `total`, then
    the CPU time of decoding and resizing, done on threads beside the model."""
    steps = {"loading the bundle": loading, "model": timings.model, "waiting for photos": timings.waiting,
             "ranking": timings.ranking, "CSV": writing}
    steps["other"] = max(0.0, total - sum(steps.values()))
    threads = timings.decode_threads
    beside = f"{threads} thread{'s' * (threads > 1)}" if threads else "the main thread"
    return (f"timings: {timings.photos} photos in {total:.2f} s ({timings.photos / total:.1f} photos/s): "
            + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in steps.items())
            + f"; decoding {timings.decode:.2f} s and resizing {timings.resize:.2f} s of CPU on {beside}")


def _add_repro(commands) -> None:
    repro = commands.add_parser(
        "repro",
        help="dvc repro, training independent models N at a time",
        description="Bring the DVC pipeline up to date like `dvc repro`, running the out-of-date train@<model> "
        "stages N at a time, each with its share of the CPU threads.",
    )
    repro.add_argument("--jobs", "-j", type=_positive_int, default=2, help="models trained at once (default: %(default)s)")
    repro.set_defaults(run=run_repro)


def run_repro(args) -> int:
    from fish_classifier.cli.concurrent_repro import ReproError, repro

    try:
        repro(args.jobs)
    except ReproError as exc:
        print(f"fish-classifier repro: {exc}", file=sys.stderr)
        return 1
    return 0


def collect_images(paths, unreadable_folders: list | None = None) -> list[str]:
    """Files as given, and every image file under each folder (sorted, recursive, not into linked folders).

    A folder that cannot be listed is left out, and added to `unreadable_folders` as (folder, why).
    """

    def unreadable(error: OSError) -> None:
        if unreadable_folders is not None:
            unreadable_folders.append((str(error.filename), error.strerror or str(error)))

    images = []
    for path in map(Path, paths):
        if path.is_dir():
            found = (Path(folder, name) for folder, _, names in os.walk(path, onerror=unreadable) for name in names)
            images.extend(str(p) for p in sorted(found) if p.is_file() and is_image_file(p))
        else:
            images.append(str(path))
    return images


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text!r}") from None
    if not 0 <= value <= 1:  # NaN fails this comparison too
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value
