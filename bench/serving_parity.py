"""The LiteRT serving model against the Keras model, on every test photo of the dev zip.

Prints the largest probability difference (must be <= 1e-4), how many top labels agree (must
be all), how close the class activation maps are, and the warm single-image latency through
the `Predictor` on each backend (p50 and p95).

The model is the deploy bundle's when --bundle names one with a model.keras (it is copied,
never changed); otherwise a MobileNetV2 at 224 px whose head is fitted here on a few train
photos of each dev class (ImageNet weights from ../shared/keras).

Usage (from the repo root):
    python bench/serving_parity.py [--bundle models/deploy] [--runs 200] [--json bench/results/serving.json]
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the tests' support package: photo, bundle and app helpers

from support.app_bundles import DEV_ZIP, MOBILENET_WEIGHTS, build_real_photo_bundle, real_photos  # noqa: E402
from support.latency import warm_latency_ms  # noqa: E402

from fish_classifier.layout import MODEL_FILE  # noqa: E402
from fish_classifier.serving.bundle import DEFAULT_BUNDLE_DIR  # noqa: E402
from fish_classifier.serving.bundle_schema import SERVING_MODEL_FILE  # noqa: E402
from fish_classifier.serving.export import PARITY_TOLERANCE, export_for_serving  # noqa: E402
from fish_classifier.serving.predictor import Predictor  # noqa: E402


def dev_labels() -> list[str]:
    with zipfile.ZipFile(DEV_ZIP) as archive:
        return sorted({name.split("/data/test/")[1].split("/")[0] for name in archive.namelist()
                       if "/data/test/" in name and name.endswith(".jpg")})  # fmt: skip


def prepare_bundle(bundle: Path | None, work: Path) -> tuple[Path, list[tuple[str, bytes]]]:
    """A bundle with a model.keras in `work`, and the dev test photos as (label, JPEG bytes)."""
    if not DEV_ZIP.is_file():
        sys.exit(f"needs the dev zip {DEV_ZIP}; not present")
    labels = dev_labels()
    if bundle is not None and (bundle / MODEL_FILE).is_file():
        copy = work / "deploy"
        shutil.copytree(bundle, copy, ignore=shutil.ignore_patterns(SERVING_MODEL_FILE))
        return copy, real_photos(labels, "test", 10_000)
    if not MOBILENET_WEIGHTS.is_file():
        sys.exit(f"no bundle given and no {MOBILENET_WEIGHTS} to build one from")
    print(f"fitting a MobileNetV2 head on 30 train photos of each of {len(labels)} dev classes ...", flush=True)
    return build_real_photo_bundle(work / "deploy", labels, image_size=224), real_photos(labels, "test", 10_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=REPO_ROOT / DEFAULT_BUNDLE_DIR)
    parser.add_argument("--runs", type=int, default=200, help="timed single-image predictions per backend")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        bundle, photos = prepare_bundle(args.bundle, Path(work))
        images = [data for _, data in photos]
        start = time.perf_counter()
        report = export_for_serving(bundle, images)
        print(f"export and parity check: {time.perf_counter() - start:.1f} s")
        litert, keras_predictor = Predictor(bundle), Predictor(bundle, backend="keras")
        cams = [
            np.abs(litert.class_activation_map(d) - keras_predictor.class_activation_map(d)).max() for d in images[:20]
        ]
        accuracy = np.mean([p.label == label for p, (label, _) in zip(litert.predict(images), photos)])
        figures = {
            "model": litert.model_name,
            "input_size": litert.input_size,
            "test_images": report["images"],
            "max_abs_diff": report["max_abs_diff"],
            "labels_agree": report["labels_agree"],
            "cam_max_abs_diff": float(max(cams)),
            "litert_test_accuracy": float(accuracy),
            "tflite_mb": round((bundle / SERVING_MODEL_FILE).stat().st_size / 1e6, 2),
            "litert_threads": litert._backend.num_threads,
            "latency_ms": {
                "litert": warm_latency_ms(litert, images[0], args.runs),
                "keras": warm_latency_ms(keras_predictor, images[0], args.runs),
            },
        }
    ok = figures["max_abs_diff"] <= PARITY_TOLERANCE and figures["labels_agree"] == figures["test_images"]
    print(f"{figures['model']} at {figures['input_size']} px on {figures['test_images']} dev test photos:")
    print(f"  largest |p_litert - p_keras|  {figures['max_abs_diff']:.2e}  (allowed {PARITY_TOLERANCE:.0e})")
    print(f"  top labels agree             {figures['labels_agree']}/{figures['test_images']}")
    print(f"  largest CAM difference       {figures['cam_max_abs_diff']:.2e}  (maps in [0, 1], 20 photos)")
    print(f"  LiteRT test accuracy         {figures['litert_test_accuracy']:.1%}")
    for backend, ms in figures["latency_ms"].items():
        print(f"  {backend:7s} single image p50 {ms['p50_ms']:.2f} ms, p95 {ms['p95_ms']:.2f} ms")
    print("PARITY OK" if ok else "PARITY FAILED")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
