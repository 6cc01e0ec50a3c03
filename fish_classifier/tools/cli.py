"""The `fish-classifier` command line.

    fish-classifier predict PATH... --out predictions.csv
    fish-classifier repro --jobs 2

Each command is a subparser with a `run(args) -> exit code` function, so a new
command is one more `_add_<name>` function. Exit codes: 0 when the command ran
(even if some images were unreadable: they get an `error` row), 2 on usage errors, 130 on Ctrl-C.
"""

import argparse
import contextlib
import csv
import math
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

from fish_classifier.images import IMAGE_EXTENSIONS, is_image_file
from fish_classifier.serving.bundle import DEFAULT_BUNDLE_DIR
from fish_classifier.top_k import format_top_k

USAGE_ERROR = 2
INTERRUPTED = 130  # what shells report for a command stopped by Ctrl-C
PREDICTION_COLUMNS = ["path", "label", "display_name", "confidence", "is_low_confidence", "is_unknown", "unknown_score",
                      "top_k", "error"]


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("fish-classifier: interrupted", file=sys.stderr)
        return INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fish-classifier", description="Fish-species image classifier.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('fish-classifier')}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_predict(commands)
    _add_repro(commands)
    return parser


def _add_predict(commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="classify image files and folders into a CSV",
        description=f"Classify images (folders are searched recursively for {', '.join(IMAGE_EXTENSIONS)}) "
        "with the deploy bundle and write one CSV row per image. The CSV appears (or replaces the old one) "
        "only once every image is done.",
    )
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    predict.add_argument("--out", default="predictions.csv", help="CSV file to write (default: %(default)s)")
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
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        return _usage_error(f"no such file or folder: {', '.join(missing)}")
    images = collect_images(args.paths)
    if not images:
        return _usage_error(f"no images found in {', '.join(args.paths)} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    out = Path(args.out)
    if out.is_dir():
        return _usage_error(f"--out {args.out} is a folder; give the CSV file to write, e.g. {out / 'predictions.csv'}")
    if out.resolve() in {Path(image).resolve() for image in images}:
        return _usage_error(f"--out {args.out} is one of the input images; write the CSV elsewhere")

    from tqdm import tqdm

    from fish_classifier.serving.predictor import Predictor, Timings

    load_start = time.perf_counter()
    try:  # the Predictor reads and checks the bundle before it loads a model (and TensorFlow, for model.keras)
        predictor = Predictor(args.bundle, batch_size=args.batch_size)
    except BundleError as exc:
        return _usage_error(str(exc))
    loading = time.perf_counter() - load_start

    low, unknown, failed = 0, 0, 0
    timings, writing = Timings(), 0.0
    with _written_when_complete(out) as f, tqdm(total=len(images), desc="predict", unit="img") as bar:
        writer = csv.DictWriter(f, fieldnames=PREDICTION_COLUMNS)
        writer.writeheader()
        for prediction in predictor.iter_predict(images, top_k=args.top_k, threshold=args.threshold, timings=timings):
            start = time.perf_counter()
            writer.writerow(_row(prediction))
            writing += time.perf_counter() - start
            low += bool(prediction.is_low_confidence)
            unknown += prediction.is_unknown
            failed += prediction.error is not None
            bar.update()
    print(f"wrote {len(images)} predictions to {out} ({unknown} unknown, {low} low-confidence, {failed} unreadable)",
          file=sys.stderr)
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


@contextlib.contextmanager
def _written_when_complete(path: Path):
    """A text file that replaces `path` only once the block ends without error, so that an
    interrupted run leaves the old file (or none), never a partial one that looks complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(partial, "w", newline="", encoding="utf-8") as f:
            yield f
        os.replace(partial, path)  # atomic within one folder
    finally:
        partial.unlink(missing_ok=True)


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
    from fish_classifier.tools.concurrent_repro import ReproError, repro

    try:
        repro(args.jobs)
    except ReproError as exc:
        print(f"fish-classifier repro: {exc}", file=sys.stderr)
        return 1
    return 0


def collect_images(paths) -> list[str]:
    """Files as given, and every image file under each folder (sorted, recursive)."""
    images = []
    for path in map(Path, paths):
        if path.is_dir():
            images.extend(str(p) for p in sorted(path.rglob("*")) if p.is_file() and is_image_file(p))
        else:
            images.append(str(path))
    return images


def _row(prediction) -> dict:
    return {
        "path": prediction.source,
        "label": prediction.label or "",
        "display_name": prediction.display_name or "",
        "confidence": "" if math.isnan(prediction.confidence) else f"{prediction.confidence:.6f}",
        "is_low_confidence": prediction.is_low_confidence,
        "is_unknown": prediction.is_unknown,
        "unknown_score": "" if math.isnan(prediction.unknown_score) else f"{prediction.unknown_score:.6g}",
        "top_k": format_top_k((label, probability) for label, _, probability in prediction.top_k),
        "error": prediction.error or "",
    }


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


def _usage_error(message: str) -> int:
    print(f"fish-classifier: error: {message}", file=sys.stderr)
    return USAGE_ERROR
