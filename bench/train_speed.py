"""Benchmark: this project's MobileNetV2 recipe against the usual one, side by side, on the same data and epochs.

The usual recipe (what the reference project did): an augmenting generator,
inputs rescaled to [0, 1], the frozen backbone run on every image every epoch,
and a dense head. The project's recipe: the backbone runs once per image, the
head trains on cached features, then the top layers fine-tune on cached
activations at the cut.

Needs the dev data prepared (`data/manifest.csv` from the dev zip) and
MobileNetV2's ImageNet weights (KERAS_HOME, see README). Run from the repo root:

    python bench/train_speed.py --epochs 10

Each recipe runs in its own process, so peak memory is its own.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

MANIFEST = Path("data/manifest.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="total epochs for each recipe")
    parser.add_argument("--fine-tune-epochs", type=int, default=2, help="of the total, the project's phase 2")
    parser.add_argument("--recipe", choices=["project", "usual"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not MANIFEST.is_file():
        sys.exit(f"{MANIFEST} is missing: prepare the dev data first (README: 'Offline, from the dev zip')")
    if args.recipe:
        print(json.dumps(run_recipe(args.recipe, args.epochs, args.fine_tune_epochs)))
        return

    results = {}
    for recipe in ("usual", "project"):
        command = [sys.executable, __file__, "--recipe", recipe, "--epochs", str(args.epochs),
                   "--fine-tune-epochs", str(args.fine_tune_epochs)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[recipe] = json.loads(output.strip().splitlines()[-1])
    print(f"MobileNetV2, ImageNet weights, {args.epochs} epochs each, dev zip, test split")
    print(f"{'recipe':<10}{'wall s':>9}{'peak MB':>9}{'accuracy':>10}{'macro F1':>10}")
    for recipe, r in results.items():
        print(f"{recipe:<10}{r['wall_s']:>9.1f}{r['peak_mb']:>9.0f}{r['accuracy']:>10.4f}{r['macro_f1']:>10.4f}")
    print(f"speed-up (usual / project wall time): {results['usual']['wall_s'] / results['project']['wall_s']:.1f}x")


def run_recipe(recipe: str, epochs: int, fine_tune_epochs: int) -> dict:
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    from fish_classifier.augment import Augmentation
    from fish_classifier.images import load_pixels
    from fish_classifier.manifest import label_indices, read_manifest
    from fish_classifier.params import load_params
    from fish_classifier.training import load_training_data, train_model

    data = load_training_data(MANIFEST, "data/augmented/manifest.csv", "data/classes.json")
    params = load_params()
    start = time.perf_counter()
    if recipe == "project":
        train_params = dict(params["train"])
        # patience = epochs: both recipes run every epoch they are given.
        train_params["mobilenetv2"] = dict(train_params["mobilenetv2"], head_epochs=epochs - fine_tune_epochs,
                                           fine_tune_epochs=fine_tune_epochs, patience=epochs)
        model = train_model("mobilenetv2", data, train_params, params["base"]["seed"],
                            augmentation=Augmentation.from_params(params["augment"]))
        scale = 1.0
    else:
        model = train_usual_recipe(data, epochs, params["train"]["batch_size"], params["base"]["seed"])
        scale = 1 / 255.0
    wall = time.perf_counter() - start

    test = read_manifest(MANIFEST).query("split == 'test'")
    pixels = np.stack([load_pixels(p, 224) for p in test["path"]]).astype("float32") * scale
    predicted = model.predict(pixels, batch_size=64, verbose=0).argmax(axis=1)
    truth = label_indices(test["label"], data.classes)
    return {
        "wall_s": wall,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
    }


def train_usual_recipe(data, epochs: int, batch_size: int, seed: int):
    """The reference's recipe, kept as its users ran it: [0, 1] inputs and the backbone in every step."""
    import keras
    import tensorflow as tf

    from fish_classifier.training import pixel_dataset

    keras.utils.set_random_seed(seed)
    augment = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.05),
                                keras.layers.RandomZoom(0.1)])
    train = pixel_dataset(data.train_paths, data.train_labels, 224)
    train = train.shuffle(len(data.train_paths), seed=seed).batch(batch_size)
    train = train.map(lambda x, y: (augment(x, training=True) / 255.0, y)).prefetch(tf.data.AUTOTUNE)
    val = pixel_dataset(data.val_paths, data.val_labels, 224).batch(batch_size)
    val = val.map(lambda x, y: (x / 255.0, y)).prefetch(tf.data.AUTOTUNE)

    backbone = keras.applications.MobileNetV2(include_top=False, weights="imagenet", input_shape=(224, 224, 3))
    backbone.trainable = False
    inputs = keras.Input((224, 224, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs, training=False))
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dropout(0.3)(x)
    model = keras.Model(inputs, keras.layers.Dense(data.num_classes, activation="softmax")(x))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train, validation_data=val, epochs=epochs, verbose=2)
    return model


if __name__ == "__main__":
    main()
