"""Tiny training inputs: photos told apart by colour alone, and a `train` section that trains every model in seconds."""

import numpy as np
from PIL import Image

from fish_classifier.data.augment import Augmentation
from fish_classifier.model.zoo import MODEL_NAMES
from fish_classifier.training.settings import TrainSettings

# Three classes told apart by colour alone; listed out of alphabetical order on purpose.
COLOURS = {"zebra red": (220, 30, 30), "alpha green": (30, 200, 40), "mid blue": (30, 40, 220)}

# Ranges wide enough that an augmented image plainly differs from its original.
AUGMENTATION = Augmentation(max_rotation=30, max_zoom=0.3, brightness=0.4, contrast=0.4)


def write_colour_images(folder, per_class=6, size=40, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for label, colour in COLOURS.items():
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            path = folder / f"{label.replace(' ', '_')}_{i}.png"
            Image.fromarray(pixels).save(path)
            rows.append((str(path), label))
    return rows


TINY_BACKBONE = {"weights": "none", "head_epochs": 2, "head_lr": 0.01, "fine_tune_layers": 3, "fine_tune_epochs": 1,
                 "fine_tune_lr": 1e-4, "fine_tune_schedule": "constant", "dropout": 0.1, "patience": 2,
                 "mirror_train": False, "augmented_views": 0, "label_smoothing": 0.1, "mirror_average": False,
                 "composites": False}


def tiny_train_params(**overrides):
    """A complete `train` section of params.yaml that trains every model in seconds."""
    params = {"batch_size": 8, "strategy": "default", "mixed_precision": False, "frozen_pass": "auto",
              "class_weight": False,
              "cnn": {"image_size": 32, "filters": [8, 16, 16], "convs_per_block": 1, "dropout": 0.1, "epochs": 25,
                      "lr": 0.01, "lr_schedule": "constant", "patience": 25, "augment": False, "label_smoothing": 0.0,
                      "composites": False,
                      "augment_ranges": {"max_rotation": 18, "max_zoom": 0.1, "brightness": 0.0, "contrast": 0.0}}}
    params.update({name: dict(TINY_BACKBONE) for name in MODEL_NAMES if name != "cnn"})
    params.update(overrides)
    return params


def settings(name, params=None) -> TrainSettings:
    """`train` (by default `tiny_train_params()`) read for model `name`, as stages/train.py reads it."""
    return TrainSettings.from_params(tiny_train_params() if params is None else params, name)


def epoch_rates():
    """A Keras callback that records the optimizer's learning rate at the end of each epoch, in `.rates`."""
    import keras

    class EpochRates(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rates = []

        def on_epoch_end(self, epoch, logs=None):
            self.rates.append(float(self.model.optimizer.learning_rate))

    return EpochRates()
