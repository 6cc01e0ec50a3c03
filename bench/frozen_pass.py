"""The frozen pass of each backbone in Keras against LiteRT: time per photo, export cost, and agreement.

For each backbone, the part that training runs once over every photo (preprocessing and the
layers below the fine-tuning cut, with `train.<model>.fine_tune_layers` from params.yaml) is
run over the same dev photos by `FrozenPass` in both runtimes, one after the other in this
process. Weights are left random (`weights=None`): the arithmetic, and so the time, is the
same as with ImageNet weights. Prints ms per photo in each runtime, their ratio, LiteRT's
one-off export time, and the largest activation difference relative to the largest activation.

Usage (from the repo root):
    python bench/frozen_pass.py [--photos 64] [--models mobilenetv2 vgg16 ...]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # the tests' support package: photo, bundle and app helpers

from support.app_bundles import DEV_ZIP, dev_photos  # noqa: E402

from fish_classifier.cpus import cpu_threads  # noqa: E402
from fish_classifier.model.zoo import BACKBONES, build_backbone, split_for_fine_tuning  # noqa: E402
from fish_classifier.params import read_params  # noqa: E402
from fish_classifier.training.frozen_pass import FrozenPass, frozen_extractor  # noqa: E402
from fish_classifier.training.settings import TrainSettings  # noqa: E402


def write_dev_photos(folder: Path, count: int) -> list[str]:
    """`count` dev test photos, written to `folder` (the frozen pass reads files, as training does)."""
    if not DEV_ZIP.is_file():
        sys.exit(f"needs the dev zip {DEV_ZIP}; not present")
    paths = []
    for name, photo in dev_photos("test", count):
        (folder / name).write_bytes(photo)
        paths.append(str(folder / name))
    return paths


def timed(call):
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def compare(name: str, paths: list[str], settings: TrainSettings, image_size: int | None = None) -> dict:
    """Backbone `name`'s frozen pass over `paths` in Keras, then in LiteRT, with its params.yaml `settings`
    (`train` read for it): ms per photo in each, LiteRT's export seconds, the largest relative difference."""
    backbone = build_backbone(name, None, image_size)
    lower, _ = split_for_fine_tuning(backbone, settings.model.fine_tune_layers)
    extractor = frozen_extractor(name, lower, backbone.input_shape[1])
    keras_pass = FrozenPass(extractor, "keras", settings.batch_size, progress=False)
    keras_pass(paths[:8], "warm-up")
    expected, keras_s = timed(lambda: keras_pass(paths, "bench"))
    litert_pass, export_s = timed(lambda: FrozenPass(extractor, "litert", settings.batch_size, progress=False))
    litert_pass(paths[:8], "warm-up")
    got, litert_s = timed(lambda: litert_pass(paths, "bench"))
    return {"keras_ms": keras_s / len(paths) * 1000, "litert_ms": litert_s / len(paths) * 1000,
            "export_s": export_s, "max_rel_diff": float(np.abs(got - expected).max() / np.abs(expected).max())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--models", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    args = parser.parse_args(argv)
    settings = {name: read_params(train=TrainSettings.for_model(name)).train for name in args.models}
    batch_size = next(iter(settings.values())).batch_size
    with tempfile.TemporaryDirectory() as work:
        paths = write_dev_photos(Path(work), args.photos)
        print(f"{len(paths)} dev photos, {cpu_threads()} CPU threads, batch {batch_size} for Keras")
        print(f"{'backbone':<16}{'keras ms':>9}{'litert ms':>10}{'speed-up':>9}{'export s':>9}{'max rel diff':>13}")
        for name in args.models:
            row = compare(name, paths, settings[name])
            print(f"{name:<16}{row['keras_ms']:>9.1f}{row['litert_ms']:>10.1f}"
                  f"{row['keras_ms'] / row['litert_ms']:>8.1f}x{row['export_s']:>9.1f}{row['max_rel_diff']:>13.1e}",
                  flush=True)


if __name__ == "__main__":
    main()
