"""The fit loop every recipe shares: the distribution strategy and precision, class weights, the learning rate and
the loss, and `fit_pairs`, which fits on unbatched (x, label) pairs with early stopping and `FiniteLoss`."""

import logging

import keras
import numpy as np
import tensorflow as tf
from sklearn.utils.class_weight import compute_class_weight

from fish_classifier.training.finite_loss import FiniteLoss
from fish_classifier.training.multi_worker import fit_across_workers, is_multi_worker, tf_config
from fish_classifier.training.settings import LR_SCHEDULES, STRATEGIES

log = logging.getLogger(__name__)


def choose_strategy(name: str) -> tf.distribute.Strategy:
    """`auto` mirrors across GPUs when there are several, `mirrored` always, `default` never;
    `multi_worker` spans the machines named in TF_CONFIG."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}, expected one of: {', '.join(STRATEGIES)}")
    if name == "multi_worker":
        tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored" or (name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def configure_precision(mixed: bool) -> None:
    if mixed and not tf.config.list_physical_devices("GPU"):
        log.warning("train.mixed_precision is on but no GPU is visible: training in float32")
        mixed = False
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse-frequency weights ("balanced"), for classes that are still rare after augmentation."""
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    table = dict.fromkeys(range(num_classes), 1.0)
    table.update({int(c): float(w) for c, w in zip(present, weights)})
    return table


def learning_rate(start: float, schedule: str, steps: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """`start` held (`constant`), or decayed along a half cosine from `start` to 0 over `steps` (`cosine`).

    The decay lets a run start at a higher rate and still end on small steps, so the weights
    it stops with do not jump from one epoch to the next.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}, expected one of: {', '.join(LR_SCHEDULES)}")
    if schedule == "constant":
        return start
    return keras.optimizers.schedules.CosineDecay(start, decay_steps=max(steps, 1))


def training_loss(label_smoothing: float) -> keras.losses.Loss:
    """Cross-entropy against one-hot labels, smoothed by the model's `label_smoothing` (0 = plain).

    Smoothing keeps the head from driving its confidences to 1 on the training images; the
    temperature fitted on validation then sharpens them back to what the model earns.
    """
    return keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)


def fit_pairs(model, train: tf.data.Dataset, val: tf.data.Dataset, train_size: int, epochs: int, patience: int,
         strategy: tf.distribute.Strategy, fit_options: dict, finite_loss: FiniteLoss, batch_transform=None) -> None:
    """Fit on unbatched (x, label) pairs, early-stopping on validation loss and restoring the best weights.

    `train_size` counts the training pairs of all workers together (`train` holds this worker's slice).
    Labels are class indices; `model.fit` gets them one-hot, as `training_loss` expects. `finite_loss` raises
    TrainingError on a nan or infinite loss, before any other callback (DVCLive) records that epoch.
    """
    batch_size = fit_options["batch_size"]
    callbacks = [finite_loss, *fit_options["callbacks"], _early_stopping(patience)]
    if is_multi_worker(strategy):
        fit_across_workers(model, strategy, train, val, train_size=train_size, epochs=epochs, batch_size=batch_size,
                           class_weight=fit_options["class_weight"], callbacks=callbacks,
                           batch_transform=batch_transform)
        return
    num_classes = model.output_shape[-1]

    def one_hot(x, y):
        return x, tf.one_hot(y, num_classes)

    batches = train.shuffle(train_size, reshuffle_each_iteration=True).batch(batch_size)
    if batch_transform is not None:
        batches = batches.map(batch_transform, num_parallel_calls=tf.data.AUTOTUNE)
    model.fit(
        batches.map(one_hot).prefetch(tf.data.AUTOTUNE),
        validation_data=val.batch(batch_size).map(one_hot).prefetch(tf.data.AUTOTUNE),
        epochs=epochs,
        class_weight=fit_options["class_weight"],
        callbacks=callbacks,
        verbose=fit_options["verbose"],
    )


def array_pairs(x: np.ndarray, y: np.ndarray) -> tf.data.Dataset:
    """Cached arrays and their labels as unbatched (x, label) pairs, as `fit_pairs` takes them."""
    return tf.data.Dataset.from_tensor_slices((x, y))


def array_batches(x: np.ndarray, *, batch_size: int) -> tf.data.Dataset:
    """Cached arrays (features or activations) as prefetched batches."""
    return tf.data.Dataset.from_tensor_slices(x).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _early_stopping(patience: int) -> keras.callbacks.EarlyStopping:
    return keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
