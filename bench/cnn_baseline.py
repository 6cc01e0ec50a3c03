"""The project's from-scratch CNN against the reference project's, trained side by side on the same data.

Both recipes train seed by seed in one run and are scored on the test split as the `evaluate` stage does.

- **reference**: the replaced project's CNN as its README describes it: 3 blocks of one 3x3 convolution
  each with BatchNorm, MaxPool and Dropout, global average pooling, softmax; Adam at 1e-3, early stopping
  on validation loss, 224 px, pixels rescaled by 1/255, and its ImageDataGenerator-style augmentation
  (flips, rotation, zoom). Its README gives no epochs, patience or ranges: those below are the usual ones.
- **project**: params.yaml's `train.cnn`, as `train@cnn` trains it.

Both go through the same `train_model` (only the `train.cnn` settings differ), each training in its own
process, so that its wall time and peak memory are its own. Prints per seed and recipe: epochs run, val
and test accuracy, test macro F1, train wall time and peak memory; then each recipe's mean and the
project's ratios to the reference. Needs the dev data prepared (README: "Offline, from the dev zip").
From the repo root:

    python bench/cnn_baseline.py --seeds 42 1 2
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

from fish_classifier.layout import AUGMENTED_MANIFEST, CLASSES, MANIFEST, composite_set

REFERENCE = {
    "image_size": 224,
    "filters": [32, 64, 128],
    "convs_per_block": 1,
    "dropout": 0.25,
    "epochs": 30,
    "lr": 0.001,
    "lr_schedule": "constant",
    "patience": 3,
    "augment": True,
    "augment_ranges": {"max_rotation": 20, "max_zoom": 0.2, "brightness": 0.0, "contrast": 0.0},
    "label_smoothing": 0.0,
    "composites": False,
}
RECIPES = ("reference", "project")
COLUMNS = ("epochs", "val_accuracy", "accuracy", "macro_f1", "train_s", "peak_mib")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, default=list(RECIPES),
                        help="train only these (default: both; the means and ratios need both)")
    parser.add_argument("--epochs", type=int, help="cap both recipes' epochs (a quick look, not the comparison)")
    parser.add_argument("--one", choices=RECIPES, help=argparse.SUPPRESS)  # a child: train one recipe, print JSON
    args = parser.parse_args(argv)
    if not MANIFEST.is_file():
        sys.exit(f"{MANIFEST} is missing: prepare the dev data first (README: 'Offline, from the dev zip')")
    if args.one:
        print(json.dumps(train_and_score(args.one, args.seeds[0], args.epochs)))
        return

    rows = {recipe: [] for recipe in args.recipes}
    for seed in args.seeds:
        for recipe in args.recipes:
            row = run_child(recipe, seed, args.epochs)
            rows[recipe].append(row)
            print(f"seed {seed} {recipe:>9}: " + ", ".join(f"{c} {row[c]:.4g}" for c in COLUMNS), flush=True)

    print(f"\nfrom-scratch CNN, {len(args.seeds)} seeds ({' '.join(map(str, args.seeds))}), dev data test split")
    print(f"{'recipe':>10}" + "".join(f"{c:>14}" for c in COLUMNS))
    means = {}
    for recipe in args.recipes:
        means[recipe] = {c: float(np.mean([r[c] for r in rows[recipe]])) for c in COLUMNS}
        print(f"{recipe:>10}" + "".join(f"{means[recipe][c]:>14.4f}" for c in COLUMNS))
    if len(means) < len(RECIPES):
        return
    ours, theirs = means["project"], means["reference"]
    print(f"project - reference: accuracy {ours['accuracy'] - theirs['accuracy']:+.4f}, "
          f"macro F1 {ours['macro_f1'] - theirs['macro_f1']:+.4f}; "
          f"train time {ours['train_s'] / theirs['train_s']:.2f}x, peak memory {ours['peak_mib'] / theirs['peak_mib']:.2f}x")


def run_child(recipe: str, seed: int, epochs: int | None) -> dict:
    """Train and score one recipe in a fresh process, showing its epochs as they end; the last line it
    prints is the JSON row."""
    cap = ["--epochs", str(epochs)] if epochs else []
    child = subprocess.Popen([sys.executable, __file__, "--one", recipe, "--seeds", str(seed), *cap],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in child.stdout:  # Keras prints one line per epoch (verbose=2)
        lines.append(line)
        if " - val_loss: " in line:
            print(f"  {recipe} seed {seed}, epoch {sum(' - val_loss: ' in x for x in lines)}: {line.strip()}",
                  file=sys.stderr, flush=True)
    if child.wait() != 0:
        sys.exit(f"{recipe}, seed {seed} failed:\n{''.join(lines)[-3000:]}")
    return json.loads(next(line for line in reversed(lines) if line.startswith("{")))


def train_and_score(recipe: str, seed: int, epochs: int | None = None) -> dict:
    """Train `recipe` with `seed` as `train@cnn` would, then score it as `evaluate@cnn` does."""
    import keras

    from fish_classifier.data.manifest import read_manifest
    from fish_classifier.evaluation.metrics import EvaluateSettings, headline
    from fish_classifier.evaluation.predictions import predict_split
    from fish_classifier.params import check_params, read_params
    from fish_classifier.serving.inference import KerasBackend
    from fish_classifier.training.pixels import load_training_data
    from fish_classifier.training.settings import CnnSettings, TrainSettings
    from fish_classifier.training.trainer import train_model

    params = read_params(train=TrainSettings.for_model("cnn"), evaluate=EvaluateSettings)
    cnn = check_params(CnnSettings, REFERENCE, "reference") if recipe == "reference" else params.train.model
    if epochs:
        cnn = cnn.model_copy(update={"epochs": epochs})
    data = load_training_data(MANIFEST, AUGMENTED_MANIFEST, CLASSES, composite_set("cnn"))  # as stages/train.py
    start = time.perf_counter()
    model = train_model("cnn", data, params.train.model_copy(update={"model": cnn}), seed)
    train_s = time.perf_counter() - start

    manifest = read_manifest(MANIFEST)
    backend = KerasBackend(model)
    batch_size = params.evaluate.batch_size
    val, test = (predict_split(backend, manifest, split, data.classes, batch_size=batch_size, desc=f"{recipe} {split}")
                 for split in ("val", "test"))
    report = headline(test.y_true, test.probabilities.argmax(axis=1), len(data.classes))
    keras.backend.clear_session()
    return {
        "epochs": len(model.history.history["loss"]),
        "val_accuracy": float((val.probabilities.argmax(axis=1) == val.y_true).mean()),
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "train_s": train_s,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
    }


if __name__ == "__main__":
    main()
