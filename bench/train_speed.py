"""Benchmark: this project's `train@mobilenetv2` against the usual recipe, side by side, on the same data and epochs.

The project's recipe runs exactly as the stage does, with `params.yaml` as it
is: the backbone runs once per image, the head trains on cached features, then
the top layers fine-tune on cached activations at the cut, each phase
early-stopping on validation. The bench counts the epochs it ran (both phases
together) and gives the usual recipe that many.

The usual recipe (what the reference project did): an augmenting generator,
inputs rescaled to [0, 1], the frozen backbone run on every image every epoch,
and a dense head.

Needs the dev data prepared (`data/manifest.csv` from the dev zip) and
MobileNetV2's ImageNet weights (KERAS_HOME, see README). Run from the repo root:

    python bench/train_speed.py

Each recipe runs in its own process, so peak memory is its own.
"""

import argparse
import json
import resource
import subprocess
import sys
import time

from fish_classifier.layout import AUGMENTED_MANIFEST, CLASSES, MANIFEST, composite_set


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int,
                        help="give the usual recipe this many epochs instead of the count the project's run took")
    parser.add_argument("--recipe", choices=["project", "usual"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not MANIFEST.is_file():
        sys.exit(f"{MANIFEST} is missing: prepare the dev data first (README: 'Offline, from the dev zip')")
    if args.recipe:
        print(json.dumps(run_recipe(args.recipe, args.epochs)))
        return

    results = {"project": run_in_process("project")}
    epochs = args.epochs or results["project"]["epochs"]
    results["usual"] = run_in_process("usual", epochs)
    project = results["project"]
    print(f"MobileNetV2, ImageNet weights, dev zip, test split; the project ran {project['epochs']} epochs "
          f"({project['head_epochs']} head + {project['fine_tune_epochs']} fine-tuning), the usual recipe {epochs}")
    print(f"{'recipe':<10}{'epochs':>7}{'wall s':>9}{'peak MB':>9}{'accuracy':>10}{'macro F1':>10}")
    for recipe in ("usual", "project"):
        r = results[recipe]
        print(f"{recipe:<10}{r['epochs']:>7}{r['wall_s']:>9.1f}{r['peak_mb']:>9.0f}{r['accuracy']:>10.4f}"
              f"{r['macro_f1']:>10.4f}")
    print(f"speed-up (usual / project wall time): {results['usual']['wall_s'] / project['wall_s']:.1f}x")


def run_in_process(recipe: str, epochs: int | None = None) -> dict:
    command = [sys.executable, __file__, "--recipe", recipe]
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def run_recipe(recipe: str, epochs: int | None) -> dict:
    import keras
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    from fish_classifier.data.augment import AugmentSettings
    from fish_classifier.data.manifest import label_indices, read_manifest
    from fish_classifier.images import load_pixels
    from fish_classifier.params import Base, read_params
    from fish_classifier.training.pixels import load_training_data
    from fish_classifier.training.settings import TrainSettings
    from fish_classifier.training.trainer import train_model

    class EpochCount(keras.callbacks.Callback):
        """Epochs run per `fit`: the head phase first, then fine-tuning."""

        def __init__(self):
            super().__init__()
            self.per_fit = []

        def on_train_begin(self, logs=None):
            self.per_fit.append(0)

        def on_epoch_end(self, epoch, logs=None):
            self.per_fit[-1] += 1

    data = load_training_data(MANIFEST, AUGMENTED_MANIFEST, CLASSES, composite_set("mobilenetv2"))
    # As stages/train.py reads them.
    params = read_params(base=Base, augment=AugmentSettings, train=TrainSettings.for_model("mobilenetv2"))
    start = time.perf_counter()
    if recipe == "project":
        epoch_count = EpochCount()
        # As stages/train.py calls it, its DVCLive callback aside.
        model = train_model("mobilenetv2", data, params.train, params.base.seed, callbacks=[epoch_count],
                            augmentation=params.augment.augmentation)
        head, fine = (epoch_count.per_fit + [0])[:2]
        counted = {"epochs": head + fine, "head_epochs": head, "fine_tune_epochs": fine}
        scale = 1.0
    else:
        model = train_usual_recipe(data, epochs, params.train.batch_size, params.base.seed)
        counted = {"epochs": epochs}
        scale = 1 / 255.0
    wall = time.perf_counter() - start

    test = read_manifest(MANIFEST).query("split == 'test'")
    pixels = np.stack([load_pixels(p, 224) for p in test["path"]]).astype("float32") * scale
    predicted = model.predict(pixels, batch_size=64, verbose=0).argmax(axis=1)
    truth = label_indices(test["label"], data.classes)
    return {
        **counted,
        "wall_s": wall,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
    }


def train_usual_recipe(data, epochs: int, batch_size: int, seed: int):
    """The reference's recipe, kept as its users ran it: [0, 1] inputs and the backbone in every step."""
    import keras
    import tensorflow as tf

    from fish_classifier.training.pixels import pixel_dataset

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
