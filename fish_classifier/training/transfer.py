"""The transfer recipe: cached-feature transfer learning for the ImageNet backbones.

Transfer learning runs in two phases, and neither runs the frozen part of the
backbone more than once per image:

1. The backbone is cut into a frozen `lower` part and a `upper` part (the top
   `fine_tune_layers`). Every train and validation image goes through the
   preprocessing and `lower` once (train images also mirrored and in
   `augmented_views` random variants, if asked); those activations at the cut are kept. On a
   CPU that one pass runs in LiteRT (see `FrozenPass`): the same float32
   arithmetic, up to 4x faster there than TensorFlow.
2. Phase 1 (head): `upper` and the pooling run once more over the cached
   activations to give one feature vector per image; the head is fitted on them.
3. Phase 2 (fine-tuning): `upper` is unfrozen (BatchNorm stays frozen and in
   inference mode) and trained with the head at a low learning rate (held, or
   cosine-decayed to 0), on the cached activations.

The trained layers are then reassembled into one model that takes raw pixels (and, with
`mirror_average`, averages each photo's softmax with its mirror image's).

Every fit stops with a TrainingError as soon as an epoch's training or validation loss is nan or infinite
(`FiniteLoss`): a model of NaNs would otherwise be saved, evaluated and compared like any other.
"""

import logging
from dataclasses import dataclass

import keras
import numpy as np

from fish_classifier.data.augment import Augmentation
from fish_classifier.model.zoo import build_backbone, build_head, build_model, split_for_fine_tuning, zoo_model
from fish_classifier.training.finite_loss import FiniteLoss
from fish_classifier.training.fit import array_batches, array_pairs, fit_pairs, learning_rate, training_loss
from fish_classifier.training.frozen_pass import FrozenPass, choose_frozen_pass_runtime, frozen_extractor
from fish_classifier.training.multi_worker import worker_slice
from fish_classifier.training.pixels import TrainingData
from fish_classifier.training.settings import BackboneSettings

log = logging.getLogger(__name__)


def train_transfer(name: str, data: TrainingData, settings: BackboneSettings, strategy, fit_options: dict,
                   frozen_pass: str, augmentation: Augmentation | None = None, seed: int = 0) -> keras.Model:
    """Two-phase transfer learning on cached activations; `frozen_pass` is params' `train.frozen_pass`."""
    views = settings.augmented_views
    if views and augmentation is None:
        raise ValueError(f"train.{name}.augmented_views is {views} but no augmentation ranges were given")
    with strategy.scope():
        backbone = build_backbone(name, settings.weights)
        backbone.trainable = False
        head = build_head(data.num_classes, settings.dropout)
        if fine_tunes(settings):
            lower, upper = split_for_fine_tuning(backbone, settings.fine_tune_layers)
        else:
            lower, upper = backbone, None
    size = backbone.input_shape[1]
    frozen = FrozenPass(frozen_extractor(name, lower, size), choose_frozen_pass_runtime(frozen_pass),
                        fit_options["batch_size"])
    activations = extract_activations(frozen, data, settings, strategy, augmentation, seed)
    fit_head(name, activations, upper, head, settings, strategy, fit_options)
    if upper is not None:
        fine_tune(name, activations, upper, head, settings, strategy, fit_options)
    with strategy.scope():
        backbone.trainable = False
        model = build_model(name, data.num_classes, backbone=backbone, head=head,
                            mirror_average=settings.mirror_average)
    log.info("%s: input %dx%d, preprocessing %s", name, size, size, zoo_model(name).preprocessing)
    return model


def fine_tunes(settings: BackboneSettings) -> bool:
    """Whether phase 2 runs: it needs both layers to unfreeze and epochs to train them."""
    return settings.fine_tune_epochs > 0 and settings.fine_tune_layers > 0


@dataclass
class CachedActivations:
    """The frozen layers' output at the cut, for every image the two phases train and validate on."""

    train: np.ndarray  # this worker's train images, then each of their mirrored and augmented copies in turn
    train_labels: np.ndarray  # one per row of `train`
    train_size: int  # rows of `train` on all workers together, as `_fit` counts them
    val: np.ndarray
    val_labels: np.ndarray


def extract_activations(frozen: FrozenPass, data: TrainingData, settings: BackboneSettings, strategy,
                        augmentation: Augmentation | None, seed: int) -> CachedActivations:
    """The only pass of the frozen layers over the images: train, its mirrored and augmented copies, then val."""
    # Under multi_worker each worker extracts, and trains on, its own slice of the train images.
    mine = worker_slice(strategy)
    paths, labels = data.train_paths[mine], data.train_labels[mine]
    originals = frozen(paths, "train")
    # Cached activations rule out on-the-fly augmentation. Instead each train image also goes through the frozen
    # layers mirrored, and `augmented_views` times randomly changed, once each: copies fixed for every epoch.
    copies = []
    if settings.mirror_train:
        copies.append(frozen(paths, "train, mirrored", mirror=True))
    views = settings.augmented_views
    for view in range(views):
        copies.append(frozen(paths, f"train, augmented view {view + 1} of {views}",
                             augmentation=augmentation, seed=(seed, view)))
    val = frozen(data.val_paths, "val")
    return CachedActivations(train=np.concatenate([originals, *copies]), train_labels=np.tile(labels, 1 + len(copies)),
                             train_size=len(data.train_paths) * (1 + len(copies)), val=val, val_labels=data.val_labels)


def fit_head(name: str, activations: CachedActivations, upper: keras.Model | None, head: list[keras.layers.Layer],
             settings: BackboneSettings, strategy, fit_options: dict) -> None:
    """Phase 1: the head alone, fitted on one pooled feature vector per image."""
    pool, dropout, dense = head
    train_features, val_features = pooled_features(name, activations, upper, pool, fit_options["batch_size"])
    with strategy.scope():
        features = keras.Input(train_features.shape[1:], name="features")
        head_model = keras.Model(features, dense(dropout(features)), name=f"{name}_head")
        head_model.compile(optimizer=keras.optimizers.Adam(settings.head_lr),
                           loss=training_loss(settings.label_smoothing), metrics=["accuracy"])
    fit_pairs(head_model, array_pairs(train_features, activations.train_labels),
              array_pairs(val_features, activations.val_labels),
              activations.train_size, settings.head_epochs, settings.patience, strategy, fit_options,
              FiniteLoss(f"{name} head", f"train.{name}.head_lr", settings.head_lr))


def pooled_features(name: str, activations: CachedActivations, upper: keras.Model | None,
                    pool: keras.layers.Layer, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The train and val activations run once more through `upper` (if any) and the pooling."""
    # Built outside the strategy's scope (it adds no weights), so predict() runs locally on every worker.
    acts_input = keras.Input(activations.train.shape[1:], name="activations")
    top = upper(acts_input, training=False) if upper is not None else acts_input
    pooled = keras.Model(acts_input, pool(top), name=f"{name}_pooled")
    return (pooled.predict(array_batches(activations.train, batch_size=batch_size), verbose=0),
            pooled.predict(array_batches(activations.val, batch_size=batch_size), verbose=0))


def fine_tune(name: str, activations: CachedActivations, upper: keras.Model, head: list[keras.layers.Layer],
              settings: BackboneSettings, strategy, fit_options: dict) -> None:
    """Phase 2: `upper`, BatchNorm excepted, trained with the head at a low learning rate."""
    pool, dropout, dense = head
    with strategy.scope():
        # Layer by layer: `upper` shares its layers with the frozen backbone, and setting `upper.trainable`
        # does not reach them (their weights stayed frozen until this was set per layer).
        for layer in upper.layers:
            layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
        acts_input = keras.Input(activations.train.shape[1:], name="activations")
        # training=False keeps BatchNorm on its ImageNet statistics while the weights above it move.
        x = pool(upper(acts_input, training=False))
        tuned = keras.Model(acts_input, dense(dropout(x)), name=f"{name}_fine_tune")
        steps = settings.fine_tune_epochs * -(-activations.train_size // fit_options["batch_size"])
        tuned.compile(optimizer=keras.optimizers.Adam(fine_tune_learning_rate(settings, steps)),
                      loss=training_loss(settings.label_smoothing), metrics=["accuracy"])
    fit_pairs(tuned, array_pairs(activations.train, activations.train_labels),
              array_pairs(activations.val, activations.val_labels),
              activations.train_size, settings.fine_tune_epochs, settings.patience, strategy, fit_options,
              FiniteLoss(f"{name} fine-tuning", f"train.{name}.fine_tune_lr", settings.fine_tune_lr))


def fine_tune_learning_rate(settings: BackboneSettings,
                            steps: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Phase 2's learning rate: `fine_tune_lr` under `fine_tune_schedule` over the `steps` of all `fine_tune_epochs`."""
    return learning_rate(settings.fine_tune_lr, settings.fine_tune_schedule, steps)
