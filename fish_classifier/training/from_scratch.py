"""The from-scratch recipe: the zoo's custom CNN fitted on pixels, each batch randomly changed on the fly."""

import math

import keras

from fish_classifier.data.augment import Augmentation
from fish_classifier.model.zoo import build_model
from fish_classifier.training.finite_loss import FiniteLoss
from fish_classifier.training.fit import fit_pairs, learning_rate, training_loss
from fish_classifier.training.multi_worker import worker_slice
from fish_classifier.training.pixels import TrainingData, pixel_dataset
from fish_classifier.training.settings import CnnSettings


def train_custom_cnn(name: str, data: TrainingData, settings: CnnSettings, strategy, fit_options: dict) -> keras.Model:
    """The zoo's model `name` (the custom CNN) fitted from scratch on pixels, each batch randomly changed within
    `settings.augment_ranges` when `settings.augment` is on."""
    size = settings.image_size
    with strategy.scope():
        model = build_model(name, data.num_classes, image_size=size, filters=tuple(settings.filters),
                            convs_per_block=settings.convs_per_block, dropout=settings.dropout)
        steps = settings.epochs * math.ceil(len(data.train_paths) / fit_options["batch_size"])
        model.compile(optimizer=keras.optimizers.Adam(learning_rate(settings.lr, settings.lr_schedule, steps)),
                      loss=training_loss(settings.label_smoothing), metrics=["accuracy"])
    mine = worker_slice(strategy)
    train = pixel_dataset(data.train_paths[mine], data.train_labels[mine], size).cache()
    augment = None
    if settings.augment:
        augmenter = cnn_augmenter(settings.augment_ranges)

        def augment(x, y):
            return augmenter(x, training=True), y

    val = pixel_dataset(data.val_paths, data.val_labels, size).cache()
    fit_pairs(model, train, val, len(data.train_paths), settings.epochs, settings.patience, strategy, fit_options,
              FiniteLoss(name, f"train.{name}.lr", settings.lr), batch_transform=augment)
    return model


def cnn_augmenter(augmentation: Augmentation) -> keras.Sequential:
    """Random changes for batches of raw [0, 255] pixels (as `pixel_dataset` yields them), in the order and
    within the ranges of `Augmentation.apply`: left-right flip, rotation, zoom in, brightness, contrast."""
    pixel_range = (0, 255)
    zoom = augmentation.max_zoom
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal"),
        keras.layers.RandomRotation(augmentation.max_rotation / 360),  # a fraction of a full turn
        # Keras zooms in by showing a share 1 - f of the image: f = z / (1 + z) magnifies by up to 1 + z, as apply.
        keras.layers.RandomZoom((-zoom / (1 + zoom), 0.0)),
        # Keras adds up to +/- brightness x 255 where PIL scales by 1 +/- brightness: equal at white, more on dark.
        keras.layers.RandomBrightness(augmentation.brightness, value_range=pixel_range),
        # A pair: Keras 3 reads a single float c as (0, c), a factor in [1, 1 + c] that only ever raises contrast.
        keras.layers.RandomContrast((augmentation.contrast, augmentation.contrast), value_range=pixel_range),
    ], name="cnn_augmenter")
