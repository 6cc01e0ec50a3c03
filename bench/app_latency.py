"""How fast the app answers: warm single-image latency through the `Predictor`, and the app's cold start.

1. Warm latency: `Predictor.predict(one photo's bytes)`, as the app calls it, timed over --calls
   calls after --warmup calls (p50, p95, mean in ms). Includes JPEG decoding and resizing.
2. Cold start: from launching `streamlit run app/app.py` to the first prediction visible in
   headless Chromium (the photo is uploaded as soon as the uploader appears). Needs
   /usr/bin/chromium and /usr/bin/chromedriver; skipped with --no-browser.

The photo is the first test photo of ../shared/data/fish-dev.zip, or --image, or a synthetic one.

Usage (from the repo root):
    python bench/app_latency.py [--bundle models/deploy] [--backend auto] [--image PHOTO] [--calls 200]
                                [--no-browser] [--json bench/results/app_latency.json]
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the tests' support package: photo, bundle and app helpers

from support.app_bundles import sample_photo  # noqa: E402
from support.app_harness import CHROMIUM, headless_chromium, streamlit_server, upload, wait_for_results  # noqa: E402
from support.latency import warm_latency_ms  # noqa: E402

from fish_classifier.serving.bundle import DEFAULT_BUNDLE_DIR, BundleError  # noqa: E402
from fish_classifier.serving.inference import BACKENDS  # noqa: E402
from fish_classifier.serving.predictor import Predictor  # noqa: E402


def bench_photo(image: Path | None) -> tuple[str, bytes]:
    return (image.name, image.read_bytes()) if image is not None else sample_photo()


def cold_start_seconds(bundle: Path, photo_path: Path, species: str) -> dict:
    """Seconds from launching the app to `species` shown for `photo_path`, with the milestones between."""
    with headless_chromium() as browser, tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        with streamlit_server(bundle, Path(work) / "streamlit.log", timeout=300) as url:
            healthy = time.perf_counter() - start
            browser.get(url)
            upload(browser, [photo_path], timeout=300)
            uploader_shown = time.perf_counter() - start
            wait_for_results(browser, species, timeout=300)
            first_prediction = time.perf_counter() - start
    return {
        "server_healthy_s": round(healthy, 2),
        "uploader_shown_s": round(uploader_shown, 2),
        "first_prediction_s": round(first_prediction, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE_DIR)
    parser.add_argument("--image", type=Path, help="photo to time (default: first dev-zip test photo)")
    parser.add_argument("--backend", default="auto", choices=BACKENDS, help="the Predictor's model runtime")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--no-browser", action="store_true", help="skip the cold-start measurement")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench" / "results" / "app_latency.json")
    args = parser.parse_args()

    try:
        predictor = Predictor(args.bundle, backend=args.backend)
    except BundleError as exc:
        sys.exit(f"{exc} (or pass --bundle DIR)")
    name, photo = bench_photo(args.image)
    prediction = predictor.predict([photo])[0]
    if prediction.error:
        sys.exit(f"{name}: {prediction.error}")
    result = {
        "bundle": str(args.bundle),
        "model": predictor.model_name,
        "backend": predictor.backend,
        "input_size": predictor.input_size,
        "photo": name,
        "predicted": prediction.display_name,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "warm_predict": warm_latency_ms(predictor, photo, args.calls, args.warmup),
    }
    print(
        f"warm single-image predict ({predictor.model_name}, {predictor.input_size} px, {predictor.backend}): "
        f"{result['warm_predict']}"
    )

    if args.no_browser:
        result["cold_start"] = "skipped (--no-browser)"
    elif not CHROMIUM.exists():
        result["cold_start"] = f"skipped: {CHROMIUM} not found (apt-get install chromium chromium-driver)"
    else:
        with tempfile.TemporaryDirectory() as work:
            photo_path = Path(work) / name
            photo_path.write_bytes(photo)
            result["cold_start"] = cold_start_seconds(args.bundle.resolve(), photo_path, prediction.display_name)
    print(f"app start to first prediction in the browser: {result['cold_start']}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
