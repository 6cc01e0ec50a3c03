"""How close does `fish-classifier predict` come to the model alone, on a folder of photos? Photos per second.

Measured side by side, interleaved round by round so machine noise hits every row alike:

1. `model alone`: the deploy bundle's `model.tflite`, run as the Predictor runs it (`LiteRTBackend`,
   one photo per invoke), on the photos already decoded into memory, a batch at a time: the floor.
2. `batched invokes`: the same model with each whole batch in one LiteRT invoke (the signature runner
   resized to the batch), to see whether batching helps XNNPACK on this CPU; its largest difference
   from one photo per invoke is printed too.
3. `fish-classifier predict`: the command on the folder, end to end, as a subprocess: process start,
   imports, loading the bundle, decoding, the model, the CSV.

Then: predict's photos/s beside the model's, and their ratio (the median of each round's), and where
predict's time went (its `--timings` line from the last round, and the process start it cannot see).

Usage (from the repo root, after `dvc repro`):
    python bench/batch_throughput.py PHOTOS [--bundle models/deploy] [--batch-size 32] [--rounds 3]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # this checkout's package, as the predict subprocess gets (PYTHONPATH)

from fish_classifier.cpus import usable_cpus
from fish_classifier.images import load_pixels
from fish_classifier.serving import litert
from fish_classifier.serving.bundle import DEFAULT_BUNDLE_DIR, BundleError, read_bundle
from fish_classifier.serving.inference import OUTPUTS, LiteRTBackend
from fish_classifier.cli.main import collect_images


class BatchedRunner:
    """The bundle's model.tflite with a whole batch per invoke: the signature runner resizes its input to the batch."""

    def __init__(self, path: Path):
        self.outputs = litert.signature_runner(path)  # pixels -> the outputs by name, as LiteRTBackend.outputs


def model_seconds(model, pixels: np.ndarray, batch_size: int) -> float:
    start = time.perf_counter()
    for i in range(0, len(pixels), batch_size):
        model.outputs(pixels[i : i + batch_size])
    return time.perf_counter() - start


def largest_difference(model, other, pixels: np.ndarray, batch_size: int) -> float:
    """The largest difference between two models' outputs (all of them) on the same batches."""
    batches = [pixels[i : i + batch_size] for i in range(0, len(pixels), batch_size)]
    return max(float(np.abs(model.outputs(batch)[name] - other.outputs(batch)[name]).max())
               for batch in batches for name in OUTPUTS)


def predict_run(photos: Path, bundle: Path, batch_size: int, out: Path) -> tuple[float, str]:
    """(seconds, the --timings line) of `fish-classifier predict` on `photos`, process start included."""
    command = [sys.executable, "-m", "fish_classifier", "predict", str(photos), "--bundle", str(bundle),
               "--out", str(out), "--batch-size", str(batch_size), "--timings"]
    # This checkout's package, whichever one the environment has installed.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, check=False)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"fish-classifier predict failed ({run.returncode}):\n{run.stderr[-3000:]}")
    [timings] = [line for line in run.stderr.splitlines() if line.startswith("timings: ")]
    return seconds, timings


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, help="a folder of photos (searched recursively, as predict does)")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE_DIR)
    parser.add_argument("--batch-size", type=int, default=32, help="as predict's --batch-size (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = parser.parse_args(argv)
    args.photos, args.bundle = args.photos.resolve(), args.bundle.resolve()  # predict runs from the repo root

    try:
        bundle = read_bundle(args.bundle)
    except BundleError as exc:
        sys.exit(f"{exc} (or pass --bundle DIR)")
    if bundle.serving_model_path is None:
        sys.exit(f"{args.bundle} has no model.tflite; `fish-classifier predict` would run the Keras model")
    paths = collect_images([args.photos])
    if not paths:
        sys.exit(f"no photos in {args.photos}")
    pixels = np.stack([load_pixels(path, bundle.input_size) for path in paths])  # uint8, as the Predictor passes them
    alone, batched = LiteRTBackend(bundle.serving_model_path), BatchedRunner(bundle.serving_model_path)
    difference = largest_difference(alone, batched, pixels, args.batch_size)

    rates = {"model alone": [], "batched invokes": [], "predict": []}
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "predictions.csv"
        for model in (alone, batched):  # warm-up: memory planned, caches filled
            model.outputs(pixels[: args.batch_size])
        for _ in range(args.rounds):
            rates["model alone"].append(len(paths) / model_seconds(alone, pixels, args.batch_size))
            rates["batched invokes"].append(len(paths) / model_seconds(batched, pixels, args.batch_size))
            seconds, timings = predict_run(args.photos.resolve(), args.bundle.resolve(), args.batch_size, out)
            rates["predict"].append(len(paths) / seconds)

    ratios = [predict / alone for predict, alone in zip(rates["predict"], rates["model alone"])]
    median = {name: statistics.median(values) for name, values in rates.items()}
    print(f"{bundle.model_name} at {bundle.input_size} px, {len(paths)} photos, batches of {args.batch_size}, "
          f"{usable_cpus()} CPUs, median of {args.rounds} interleaved rounds")
    print(f"model alone {median['model alone']:.1f} photos/s, fish-classifier predict {median['predict']:.1f} "
          f"photos/s end to end: {statistics.median(ratios):.0%} of the model alone "
          f"(rounds: {', '.join(f'{ratio:.0%}' for ratio in ratios)})")
    print(f"batched invokes {median['batched invokes']:.1f} photos/s, "
          f"{median['batched invokes'] / median['model alone'] - 1:+.0%} against one photo per invoke; "
          f"outputs differ by at most {difference:.1e}")
    inside = float(re.search(r"photos in ([\d.]+) s", timings).group(1))
    print(f"last predict run: {seconds:.2f} s, of which process start and imports {seconds - inside:.2f} s; "
          f"its {timings}")


if __name__ == "__main__":
    main()
