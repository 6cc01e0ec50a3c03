"""How fast can this CPU run the deploy model at all? The floor under the Predictor's single-image latency.

Measured side by side, interleaved round by round so machine noise hits every row alike:

1. `bundle model`: the deploy bundle's `model.tflite` alone (one invoke on pixels already in memory).
2. `stock export`: `keras.applications.<same backbone>` with a plain softmax head, exported to LiteRT
   the usual way (`model.export(format="litert")`) and run the same way; it shows whether the
   project's export (preprocessing inside, class-map output) costs anything.
3. `JPEG to pixels`: `images.load_pixels(JPEG bytes, size)`, the decoding and resizing that training
   and the Predictor share.
4. `Predictor`: `Predictor.predict(one photo's JPEG bytes)`, as the app calls it (decode, resize,
   model, temperature, top-k, unknown-photo score).
5. `no unknown check`: the same Predictor with its unknown-photo detector switched off, for the detector's cost.
6. `baseline`: with `--baseline DIR`, the Predictor of another bundle (say, one exported without the ImageNet
   branch), so that the two bundles' latencies are compared in one run.

Then it prints the deploy model's multiply-adds (counted from the layers of its `model.keras`), this machine's float32 matrix
multiply throughput (NumPy's BLAS on all usable CPUs), and the latency that throughput implies for
the model: no float32 runtime can beat it by much, since convolutions are matrix multiplies at best.

Usage (from the repo root, after `dvc repro`):
    python bench/latency_floor.py [--bundle models/deploy] [--baseline DIR] [--rounds 20] [--calls 20]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the tests' support package: photo, bundle and app helpers

from support.app_bundles import sample_photo  # noqa: E402

from fish_classifier.cpus import usable_cpus  # noqa: E402
from fish_classifier.images import load_pixels  # noqa: E402
from fish_classifier.model.zoo import BACKBONES, build_backbone  # noqa: E402
from fish_classifier.serving import litert  # noqa: E402
from fish_classifier.serving.bundle import DEFAULT_BUNDLE_DIR, BundleError  # noqa: E402
from fish_classifier.serving.inference import LiteRTBackend  # noqa: E402
from fish_classifier.serving.predictor import Predictor  # noqa: E402


def stock_litert(model_name: str, size: int, classes: int, work: Path):
    """The backbone as `keras.applications` builds it, with a pooled softmax head, exported with Keras's defaults:
    a function from pixels to its outputs."""
    import keras

    backbone = build_backbone(model_name, None, size)
    x = keras.layers.GlobalAveragePooling2D()(backbone.output)
    model = keras.Model(backbone.input, keras.layers.Dense(classes, activation="softmax")(x))
    path = work / "stock.tflite"
    model.export(str(path), format="litert", verbose=False)
    return litert.signature_runner(path)  # run as `LiteRTBackend` runs the bundle's: one signature-runner call


def multiply_adds(model) -> int:
    """Multiply-adds of one image through a Keras model and the models nested in it, from layer shapes.

    After a `MirrorPair` layer (a model built with `mirror_average`) every layer runs on the photo and its mirror.
    """
    import keras

    from fish_classifier.model.preprocessing import MirrorPair

    total, images = 0, 1
    for layer in model.layers:
        if isinstance(layer, MirrorPair):
            images = 2
        elif isinstance(layer, keras.Model):
            total += images * multiply_adds(layer)
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            total += images * h * w * c * int(np.prod(layer.kernel_size))
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c = layer.output.shape
            total += images * h * w * c * int(np.prod(layer.kernel_size)) * layer.input.shape[-1]
        elif isinstance(layer, keras.layers.Dense):
            total += images * int(np.prod(layer.kernel.shape))
    return total


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best float32 GEMM throughput of NumPy's BLAS here, in GFLOP/s (2 n^3 flops per product)."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE_DIR)
    parser.add_argument("--baseline", type=Path, help="another deploy bundle whose Predictor is timed beside")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds")
    parser.add_argument("--calls", type=int, default=20, help="timed calls of each row per round")
    parser.add_argument("--matmul-size", type=int, default=2048, help="side of the square matrices timed for GFLOP/s")
    args = parser.parse_args(argv)

    try:
        predictor = Predictor(args.bundle, backend="litert")
    except BundleError as exc:
        sys.exit(f"{exc} (or pass --bundle DIR)")
    size, classes = predictor.input_size, len(predictor.classes)
    _, photo = sample_photo()
    pixels = load_pixels(photo, size)[np.newaxis].astype(np.float32)
    bundle_model = LiteRTBackend(predictor.bundle.serving_model_path)
    with tempfile.TemporaryDirectory() as work:
        rows = {"bundle model": lambda: bundle_model(pixels)}
        if predictor.model_name in BACKBONES:  # keras.applications has no stock version of the custom CNN
            stock = stock_litert(predictor.model_name, size, classes, Path(work))
            rows["stock export"] = lambda: stock(pixels)
        rows["JPEG to pixels"] = lambda: load_pixels(photo, size)
        rows["Predictor"] = lambda: predictor.predict([photo])
        if predictor.detector is not None:
            plain = Predictor(args.bundle, backend="litert")
            plain.detector = None
            rows["no unknown check"] = lambda: plain.predict([photo])
        if args.baseline is not None:
            baseline = Predictor(args.baseline, backend="litert")
            rows["baseline"] = lambda: baseline.predict([photo])
        times = {name: [] for name in rows}
        for call in rows.values():  # warm-up
            for _ in range(10):
                call()
        for _ in range(args.rounds):
            for name, call in rows.items():
                times[name].extend(_seconds(call) * 1000 for _ in range(args.calls))

    from fish_classifier.model.preprocessing import load_model

    macs = multiply_adds(load_model(predictor.bundle.model_path))
    gflops = matmul_gflops(args.matmul_size)
    floor_ms = 2 * macs / (gflops * 1e9) * 1000
    print(f"{predictor.model_name} at {size} px, {usable_cpus()} CPUs, {args.rounds} x {args.calls} calls per row")
    print(f"{'row':<14}{'p50 ms':>8}{'p95 ms':>8}")
    for name, samples in times.items():
        print(f"{name:<14}{statistics.median(samples):>8.2f}{np.percentile(samples, 95):>8.2f}")
    bundle_p50 = statistics.median(times["bundle model"])
    if "no unknown check" in times:
        with_check, without = statistics.median(times["Predictor"]), statistics.median(times["no unknown check"])
        print(f"the unknown-photo check ({predictor.detector.method}) costs {with_check / without - 1:+.1%} "
              "of the Predictor's p50")
    if "baseline" in times:
        ratio = statistics.median(times["Predictor"]) / statistics.median(times["baseline"])
        print(f"the Predictor's p50 is {ratio:.2f}x the baseline bundle's ({args.baseline})")
    print(f"model: {macs / 1e6:.0f} M multiply-adds = {2 * macs / 1e9:.2f} GFLOP per image")
    print(f"float32 matrix multiply here: {gflops:.0f} GFLOP/s, so the model needs at least {floor_ms:.2f} ms")
    print(f"the bundle model runs at {2 * macs / (bundle_p50 / 1000) / 1e9:.0f} GFLOP/s "
          f"({2 * macs / (bundle_p50 / 1000) / 1e9 / gflops:.0%} of that)")


if __name__ == "__main__":
    main()
