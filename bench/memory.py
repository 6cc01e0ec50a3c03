"""What costly photos cost in memory: the Predictor's peak above its resting memory, one case a process.

Cases (generated here, so nothing needs downloading):
  (a) 16-bit PNG   one 7000x7000 16-bit grey PNG, flat but for a ramp (about 140 KB on disk, 98 MB of
                   samples): the photo issue 18 found costing more than 1.2 GB.
  (b) 20 JPEGs     20 photo-like 4000x3000 JPEGs (a few MB each) in one `Predictor.predict` call: a
                   full batch at the app's cap on files per upload.

Each case runs in a fresh Python process, so that peaks do not mix: it loads the Predictor, predicts
once on as many small photos as the case has (the model's own buffers for that batch are then in
place), reads the photos' bytes, and takes its resident memory (RSS) as resting. The case's figure
is the RSS high-water mark during `predict` minus that resting RSS (Linux's VmHWM, first reset to the
resting RSS where the kernel allows). "Kept" is what the process still holds once the predictions
are dropped: memory the allocator did not give back.

The bundle is --bundle (default models/deploy); where it is absent, a small colour test bundle
(tests/app_bundles.build_colour_bundle) is built in a temporary folder, and the output says so.

Usage (from the repo root):
    python bench/memory.py [--bundle models/deploy]
"""

import argparse
import gc
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the tests' support package: photo, bundle and app helpers

from support.synthetic_images import flat_16_bit_png  # noqa: E402

from fish_classifier.serving.bundle import DEFAULT_BUNDLE_DIR  # noqa: E402
from fish_classifier.serving.bundle_schema import INFO_FILE  # noqa: E402

PNG_SIDE = 7000
JPEG_SIZE = (4000, 3000)
JPEG_COUNT = 20  # app/app.py's MAX_FILES
PNG_LIMIT_MB = 300  # issue 18: the 16-bit PNG must stay under this above resting memory
CASES = {"png": "(a) one 16-bit 7000x7000 PNG", "jpegs": f"(b) {JPEG_COUNT} JPEGs of 4000x3000, one call"}


def photo_jpeg(seed: int) -> bytes:
    """A 4000x3000 JPEG that compresses like a photo: smooth colour waves under mild sensor noise."""
    width, height = JPEG_SIZE
    rng = np.random.default_rng(seed)
    x = np.arange(width, dtype=np.float32)[np.newaxis, :]
    y = np.arange(height, dtype=np.float32)[:, np.newaxis]
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    for channel in range(3):
        phase = rng.uniform(0, 6)
        wave = 128 + 90 * np.sin(x / (170 + 40 * channel) + y / (230 - 30 * channel) + phase)
        pixels[..., channel] = np.clip(wave + rng.normal(0, 6, (height, width)).astype(np.float32), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_photos(work: Path) -> dict[str, list[Path]]:
    png = work / "flat-16-bit.png"
    png.write_bytes(flat_16_bit_png(PNG_SIDE, PNG_SIDE))
    jpegs = []
    for seed in range(JPEG_COUNT):
        jpegs.append(work / f"photo-{seed:02d}.jpg")
        jpegs[-1].write_bytes(photo_jpeg(seed))
    return {"png": [png], "jpegs": jpegs}


def kilobytes(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS: now, VmHWM: the high-water mark)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def reset_peak() -> bool:
    """Set the high-water mark back to the current RSS (Linux 4.0+); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def measure(bundle: Path, paths: list[Path]) -> dict:
    """Run in the case's own process: the Predictor's peak and kept memory above resting, in MB."""
    from fish_classifier.serving.predictor import Predictor

    predictor = Predictor(bundle)
    small = io.BytesIO()
    Image.new("RGB", (256, 256), (90, 120, 150)).save(small, format="JPEG")
    predictor.predict([small.getvalue()] * len(paths))  # the model's buffers for a batch this size
    photos = [path.read_bytes() for path in paths]  # held, as the app holds its uploads
    gc.collect()
    resting = kilobytes("VmRSS")
    fresh_peak = reset_peak()
    predictions = predictor.predict(photos)
    peak = kilobytes("VmHWM")
    errors = [p.error for p in predictions if p.error]
    del predictions
    gc.collect()
    return {
        "backend": predictor.backend,
        "resting_mb": resting / 1024,
        "peak_above_resting_mb": (peak - resting) / 1024,
        "kept_mb": (kilobytes("VmRSS") - resting) / 1024,
        "fresh_peak": fresh_peak,
        "errors": errors,
    }


def run_case(bundle: Path, paths: list[Path]) -> dict:
    command = [sys.executable, __file__, "--bundle", str(bundle), "--measure", *map(str, paths)]
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise SystemExit(f"the case's process failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE_DIR)
    parser.add_argument("--measure", nargs="+", type=Path, help=argparse.SUPPRESS)  # a case's own process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.bundle, args.measure)))
        return
    if not Path("/proc/self/status").is_file():
        raise SystemExit("this bench reads memory from Linux's /proc/self/status")

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        bundle = args.bundle if args.bundle.is_absolute() else REPO_ROOT / args.bundle
        if (bundle / INFO_FILE).is_file():
            print(f"Deploy bundle: {bundle}")
        else:
            from support.app_bundles import build_colour_bundle

            print(f"No deploy bundle at {bundle}: built a small colour test bundle "
                  f"(tests/app_bundles.build_colour_bundle) in {work / 'deploy'} instead.")  # fmt: skip
            bundle = build_colour_bundle(work / "deploy")
        photos = write_photos(work)
        on_disk = {case: sum(path.stat().st_size for path in paths) / 2**20 for case, paths in photos.items()}
        rows = {case: run_case(bundle, photos[case]) for case in CASES}

    print(f"Backend: {rows['png']['backend']}; resting RSS (Predictor loaded and warmed, photos read): "
          f"{rows['png']['resting_mb']:.0f} MB (case a), {rows['jpegs']['resting_mb']:.0f} MB (case b)")  # fmt: skip
    print(f"{'case':<40} {'files':>9} {'peak above resting':>19} {'kept after':>11}")
    for case, label in CASES.items():
        row = rows[case]
        peak, kept = row["peak_above_resting_mb"], row["kept_mb"]
        print(f"{label:<40} {on_disk[case]:>6.1f} MB {peak:>16.1f} MB {kept:>8.1f} MB")
        if row["errors"]:
            print(f"    refused: {row['errors'][0]}")
        if not row["fresh_peak"]:
            print("    (the kernel would not reset the high-water mark: this peak may be the Predictor's loading)")
    verdict = "under" if rows["png"]["peak_above_resting_mb"] < PNG_LIMIT_MB else "OVER"
    print(f"(a) is {verdict} the {PNG_LIMIT_MB} MB issue 18 allows the 16-bit PNG.")


if __name__ == "__main__":
    main()
