"""The training recipe: cached-feature transfer learning for backbones, plain fitting for the custom CNN.

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

import functools
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from pydantic import ConfigDict, Field, create_model, model_validator
from sklearn.utils.class_weight import compute_class_weight

from fish_classifier.cpus import cpu_threads
from fish_classifier.data.augment import Augmentation
from fish_classifier.data.manifest import DatasetError, check_scored_splits, label_indices, read_classes, read_manifest
from fish_classifier.images import load_pixels, open_rgb
from fish_classifier.model.preprocessing import BackbonePreprocess
from fish_classifier.model.zoo import (
    BACKBONES,
    build_backbone,
    build_head,
    build_model,
    check_model_name,
    split_for_fine_tuning,
)
from fish_classifier.params import Flag, Rule, Section, check_params, choice, integer, number, refuse
from fish_classifier.training.multi_worker import fit_across_workers, is_multi_worker, tf_config, worker_slice

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
FROZEN_PASS_RUNTIMES = ("auto", "litert", "keras")  # auto: LiteRT on a CPU, Keras when a GPU is visible
LR_SCHEDULES = ("constant", "cosine")  # train.cnn.lr_schedule and each backbone's fine_tune_schedule

Fraction = number(ge=0, lt=1)  # a dropout rate, a label smoothing


def _weights_exist(weights: str) -> bool:
    return weights == "imagenet" or weights.lower() == "none" or Path(weights).is_file()


class TrainingError(RuntimeError):
    """A fit that went wrong in a way no model should be saved from; the one-line message names the model, the
    epoch and the knob to change."""


class FiniteLoss(keras.callbacks.Callback):
    """Raises TrainingError at the end of the first epoch whose loss or validation loss is nan or infinite.

    `keras.callbacks.TerminateOnNaN` only stops the fit, and the stage then saved the NaN model with exit status 0.
    `fit` names what is being fitted (`cnn`, `vgg16 head`), `lr_key` the params.yaml key of its learning rate.
    """

    def __init__(self, fit: str, lr_key: str, lr: float):
        super().__init__()
        self.fit, self.lr_key, self.lr = fit, lr_key, lr

    def on_epoch_end(self, epoch, logs=None):
        for key, what in (("loss", "loss"), ("val_loss", "validation loss")):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                raise TrainingError(
                    f"{self.fit}: {what} became {float(value)} in epoch {epoch + 1}; lower {self.lr_key} "
                    f"({self.lr:g}) in params.yaml"
                )


class CnnSettings(Section):
    """params.yaml's `train.cnn`: the custom CNN, trained from scratch."""

    image_size: integer(ge=1)  # and at least 2 ** len(filters), checked below
    filters: Annotated[list[Annotated[int, Field(strict=True, ge=1)]], Field(min_length=1),
                       Rule("a non-empty list of integers >= 1 (one conv block each)")]
    convs_per_block: integer(ge=1)
    dropout: Fraction
    epochs: integer(ge=1)
    lr: number(gt=0)
    lr_schedule: choice(*LR_SCHEDULES)
    patience: integer(ge=0)
    augment: Flag  # on-the-fly random changes of each batch, within augment_ranges (see cnn_augmenter)
    # Its own ranges: milder than the augment stage's, which makes whole new photos of the rare classes.
    augment_ranges: Augmentation
    label_smoothing: Fraction
    composites: Flag  # also train on data/composited: the studio fish put onto other backgrounds

    @model_validator(mode="after")
    def _image_survives_the_pooling(self):
        # Each block halves the image (MaxPooling2D): fewer than one pixel left is a Keras error at build time.
        if self.image_size < 2 ** len(self.filters):
            raise refuse("image_size", self.image_size, f"an integer >= {2 ** len(self.filters)} with "
                         f"{len(self.filters)} filters (each conv block halves the image)")
        return self


class BackboneSettings(Section):
    """params.yaml's `train.<backbone>`: transfer learning from an ImageNet backbone (see the module's docstring)."""

    weights: Annotated[str, Field(strict=True),
                       Rule("imagenet, none or the path of an existing .h5 weights file", holds=_weights_exist)]
    head_epochs: integer(ge=1)
    head_lr: number(gt=0)
    fine_tune_layers: integer(ge=0)  # 0, or fine_tune_epochs 0: no phase 2
    fine_tune_epochs: integer(ge=0)
    fine_tune_lr: number(gt=0)
    fine_tune_schedule: choice(*LR_SCHEDULES)
    dropout: Fraction
    patience: integer(ge=0)
    mirror_train: Flag
    augmented_views: integer(ge=0)
    label_smoothing: Fraction
    mirror_average: Flag
    composites: Flag  # also train on data/composited: the studio fish put onto other backgrounds


class TrainSettings(Section):
    """What training one model reads from params.yaml's `train`: the keys all models share, and the model's own
    section as `model` (`train.<name>`, a CnnSettings or a BackboneSettings). Read it with `for_model`."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # `models` and the other models' sections

    strategy: choice(*STRATEGIES)
    mixed_precision: Flag
    frozen_pass: choice(*FROZEN_PASS_RUNTIMES)
    batch_size: integer(ge=1)
    class_weight: Flag
    model: CnnSettings | BackboneSettings

    @staticmethod
    @functools.cache
    def for_model(name: str) -> type["TrainSettings"]:
        """The schema of `train` for model `name`: its `name` section is read as `model`."""
        section = CnnSettings if check_model_name(name) == "cnn" else BackboneSettings
        return create_model(f"TrainSettings_{name}", __base__=TrainSettings,
                            model=(section, Field(validation_alias=name)))

    @classmethod
    def from_params(cls, train_params: dict, name: str) -> "TrainSettings":
        return check_params(cls.for_model(name), train_params, "train")


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


def train_model(name: str, data: TrainingData, settings: TrainSettings, seed: int, callbacks=(),
                augmentation: Augmentation | None = None) -> keras.Model:
    """Train model `name` with its `settings` (params.yaml's `train`, read by `TrainSettings.for_model(name)`).

    `augmentation` (params.yaml's `augment` ranges) makes a backbone's `augmented_views`; the CNN has its own
    (`train.cnn.augment_ranges`).
    """
    if isinstance(settings.model, CnnSettings) != (check_model_name(name) == "cnn"):
        raise ValueError(f"the settings of train.{name} are {type(settings.model).__name__}; read them with "
                         f"TrainSettings.for_model({name!r})")
    # First: MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
    strategy = choose_strategy(settings.strategy)
    keras.utils.set_random_seed(seed)
    configure_precision(settings.mixed_precision)
    fit_options = {
        "batch_size": settings.batch_size,
        "class_weight": class_weights(data.train_labels, data.num_classes) if settings.class_weight else None,
        "callbacks": list(callbacks),
        "verbose": 2,
    }
    if name == "cnn":
        return train_custom_cnn(data, settings.model, strategy, fit_options)
    return train_transfer(name, data, settings.model, strategy, fit_options, settings.frozen_pass,
                          augmentation=augmentation, seed=seed)


def train_custom_cnn(data: TrainingData, settings: CnnSettings, strategy, fit_options: dict) -> keras.Model:
    """The custom CNN fitted from scratch on pixels, each batch randomly changed within `settings.augment_ranges`
    when `settings.augment` is on."""
    size = settings.image_size
    with strategy.scope():
        model = build_model("cnn", data.num_classes, image_size=size, filters=tuple(settings.filters),
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
    _fit(model, train, val, len(data.train_paths), settings.epochs, settings.patience, strategy, fit_options,
         FiniteLoss("cnn", "train.cnn.lr", settings.lr), batch_transform=augment)
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
    log.info("%s: input %dx%d, preprocessing %s", name, size, size, BACKBONES[name].preprocessing)
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


def extract_activations(frozen: "FrozenPass", data: TrainingData, settings: BackboneSettings, strategy,
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
    _fit(head_model, _pairs(train_features, activations.train_labels), _pairs(val_features, activations.val_labels),
         activations.train_size, settings.head_epochs, settings.patience, strategy, fit_options,
         FiniteLoss(f"{name} head", f"train.{name}.head_lr", settings.head_lr))


def pooled_features(name: str, activations: CachedActivations, upper: keras.Model | None,
                    pool: keras.layers.Layer, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The train and val activations run once more through `upper` (if any) and the pooling."""
    # Built outside the strategy's scope (it adds no weights), so predict() runs locally on every worker.
    acts_input = keras.Input(activations.train.shape[1:], name="activations")
    top = upper(acts_input, training=False) if upper is not None else acts_input
    pooled = keras.Model(acts_input, pool(top), name=f"{name}_pooled")
    return (pooled.predict(_batches(activations.train, batch_size=batch_size), verbose=0),
            pooled.predict(_batches(activations.val, batch_size=batch_size), verbose=0))


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
    _fit(tuned, _pairs(activations.train, activations.train_labels), _pairs(activations.val, activations.val_labels),
         activations.train_size, settings.fine_tune_epochs, settings.patience, strategy, fit_options,
         FiniteLoss(f"{name} fine-tuning", f"train.{name}.fine_tune_lr", settings.fine_tune_lr))


def frozen_extractor(name: str, lower: keras.Model, size: int) -> keras.Model:
    """The part training runs once per image: raw pixels through the backbone's preprocessing and `lower`."""
    pixels = keras.Input((size, size, 3), name="pixels")
    x = BackbonePreprocess(BACKBONES[name].preprocessing, name="preprocess")(pixels)
    return keras.Model(pixels, lower(x, training=False), name=f"{name}_extractor")


class FrozenPass:
    """Runs the frozen `extractor` (preprocessing and `lower`) once over images, in LiteRT or in Keras.

    Both compute the same float32 function (activations agree to about 1e-5 relative). On a
    2-core CPU, decoding included, LiteRT's XNNPACK kernels ran it 4.0x faster than TensorFlow
    for MobileNetV2, 2.3x for EfficientNetB0, 1.5x for InceptionV3, 1.1x for VGG16 and 1.0x for
    ResNet50 (`python bench/frozen_pass.py`), for a one-off export of 4 to 20 s.
    """

    def __init__(self, extractor: keras.Model, runtime: str, batch_size: int, progress: bool = True):
        if runtime not in ("litert", "keras"):
            raise ValueError(f"unknown frozen-pass runtime {runtime!r}, expected litert or keras")
        self.extractor = extractor
        self.runtime = runtime
        self.batch_size = batch_size
        self.progress = progress  # a progress bar per pass
        self.size = int(extractor.input_shape[1])
        self._runner = _litert_runner(extractor) if runtime == "litert" else None

    def __call__(self, paths, split: str, mirror: bool = False, augmentation: Augmentation | None = None,
                 seed: tuple[int, ...] = ()) -> np.ndarray:
        """Activations at the cut, one row per path, in order; `mirror` flips each image left-right first,
        `augmentation` changes it at random (see `pixel_dataset`)."""
        log.info("computing backbone activations for %d %s images (%s)", len(paths), split, self.runtime)
        if self._runner is None:
            images = pixel_dataset(paths, None, self.size, augmentation, seed)
            if mirror:
                images = images.map(tf.image.flip_left_right)
            batches = images.batch(self.batch_size).prefetch(tf.data.AUTOTUNE)
            return self.extractor.predict(batches, verbose=1 if self.progress else 0)
        # One image at a time, decoded and then run, in this thread alone. Decoding threads running beside
        # the interpreter's own threads made the pass take up to twice as long on 2 cores, at random.
        # One image per invoke: XNNPACK gains nothing from batches on a CPU, and the input never re-allocates.
        rows = []
        progress = keras.utils.Progbar(len(paths), unit_name="image", verbose=1 if self.progress else 0)
        for index, path in enumerate(paths):
            pixels = decode_pixels(str(path), self.size, augmentation, (*seed, index))
            if mirror:
                pixels = pixels[:, ::-1]
            rows.append(self._runner(pixels[np.newaxis].astype(np.float32))[0])
            progress.add(1)
        return np.stack(rows) if rows else np.zeros((0, *self.extractor.output_shape[1:]), np.float32)


def choose_frozen_pass_runtime(name: str) -> str:
    """`auto` is LiteRT on a CPU and Keras when a GPU is visible (LiteRT's Python runtime has no GPU path)."""
    if name not in FROZEN_PASS_RUNTIMES:
        raise ValueError(f"unknown train.frozen_pass {name!r}, expected one of: {', '.join(FROZEN_PASS_RUNTIMES)}")
    if name == "auto":
        return "keras" if tf.config.list_logical_devices("GPU") else "litert"
    return name


def _litert_runner(extractor: keras.Model):
    """`extractor` exported to LiteRT, as a function from a (1, S, S, 3) float32 batch to its activations."""
    from ai_edge_litert.interpreter import Interpreter

    with tempfile.TemporaryDirectory(prefix="fish-frozen-pass-") as work:
        path = Path(work) / "frozen.tflite"
        extractor.export(str(path), format="litert", verbose=False)
        content = path.read_bytes()
    interpreter = Interpreter(model_content=content, num_threads=cpu_threads())
    interpreter.allocate_tensors()
    [source] = interpreter.get_input_details()
    [target] = interpreter.get_output_details()

    def run(pixels: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(source["index"], np.ascontiguousarray(pixels, dtype=np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(target["index"])

    return run




def fine_tune_learning_rate(settings: BackboneSettings, steps: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Phase 2's learning rate: `fine_tune_lr` under `fine_tune_schedule` over the `steps` of all `fine_tune_epochs`."""
    return learning_rate(settings.fine_tune_lr, settings.fine_tune_schedule, steps)


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


def _fit(model, train: tf.data.Dataset, val: tf.data.Dataset, train_size: int, epochs: int, patience: int,
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


def _pairs(x: np.ndarray, y: np.ndarray) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((x, y))


def _batches(x: np.ndarray, *, batch_size: int) -> tf.data.Dataset:
    """Cached arrays (features or activations) as prefetched batches."""
    return tf.data.Dataset.from_tensor_slices(x).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _early_stopping(patience: int) -> keras.callbacks.EarlyStopping:
    return keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
