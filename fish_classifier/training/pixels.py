"""The pixels training reads: the train and validation photos of the manifest as paths and labels, and those
photos decoded into tf.data datasets exactly as inference reads them."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from fish_classifier.data.augment import Augmentation
from fish_classifier.data.manifest import DatasetError, check_scored_splits, label_indices, read_classes, read_manifest
from fish_classifier.images import load_pixels, open_rgb


@dataclass
class TrainingData:
    """Paths and integer labels (indices into `classes`) of the train and validation images."""

    classes: list[dict]
    train_paths: list[str]
    train_labels: np.ndarray
    val_paths: list[str]
    val_labels: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def load_training_data(manifest: str | Path, augmented_manifest: str | Path | None, classes: str | Path,
                       composited_manifest: str | Path | None = None) -> TrainingData:
    """Train = original train images plus augmented copies (and composites, when given); validation = original
    val images. Raises DatasetError when val lacks a class: early stopping, and later the choice of the model,
    its temperature and its thresholds, are made on it."""
    class_list = read_classes(classes)
    frame = read_manifest(manifest)
    try:
        check_scored_splits(frame, [entry["label"] for entry in class_list], splits=("val",))
    except DatasetError as exc:
        raise DatasetError(f"{manifest}: {exc}") from None
    train = frame[frame["split"] == "train"]
    for extra in (augmented_manifest, composited_manifest):
        if extra is not None and Path(extra).is_file():
            train = pd.concat([train, read_manifest(extra)], ignore_index=True)
    val = frame[frame["split"] == "val"]
    return TrainingData(
        classes=class_list,
        train_paths=train["path"].tolist(),
        train_labels=label_indices(train["label"], class_list),
        val_paths=val["path"].tolist(),
        val_labels=label_indices(val["label"], class_list),
    )


def pixel_dataset(paths: list[str], labels: np.ndarray | None, image_size: int,
                  augmentation: Augmentation | None = None, seed: tuple[int, ...] = ()) -> tf.data.Dataset:
    """Images decoded in parallel through `images.load_pixels`, exactly as inference reads them.

    Yields float32 pixels of shape (image_size, image_size, 3), paired with their label when `labels` is given.
    With `augmentation`, each image is first randomly changed by it, image i drawing from a generator
    seeded by (*seed, i): the same pixels whatever order the parallel decoding finishes in.
    """

    def decode(index, path):
        return decode_pixels(path.decode(), image_size, augmentation, (*seed, int(index)))

    def load(index, path):
        pixels = tf.numpy_function(decode, [index, path], tf.uint8, stateful=False)
        return tf.cast(tf.ensure_shape(pixels, (image_size, image_size, 3)), tf.float32)

    images = tf.data.Dataset.from_tensor_slices((np.arange(len(paths), dtype=np.int64), list(paths)))
    images = images.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if labels is None:
        return images
    return tf.data.Dataset.zip(images, tf.data.Dataset.from_tensor_slices(labels))


def decode_pixels(path: str, image_size: int, augmentation: Augmentation | None = None,
                  seed: tuple[int, ...] = ()) -> np.ndarray:
    """One image's uint8 pixels (image_size, image_size, 3) as `pixel_dataset` yields them: through
    `images.load_pixels`, after `augmentation` (with a generator seeded by `seed`) when given."""
    if augmentation is None:
        return load_pixels(path, image_size)
    return load_pixels(augmentation.apply(open_rgb(path), np.random.default_rng(list(seed))), image_size)
