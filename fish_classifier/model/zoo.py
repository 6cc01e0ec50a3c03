"""The model zoo: the custom CNN and five ImageNet backbones, each with its facts written down once.

Every model built here takes raw RGB pixels in [0, 255] and ends in the same
three named layers the rest of the project relies on:
`pool` (GlobalAveragePooling2D over the last feature map), a dropout, and
`head` (Dense softmax over the classes, in `data/classes.json` order).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
from keras import layers

from fish_classifier.model.preprocessing import BackbonePreprocess, MirrorMean, MirrorPair


@dataclass(frozen=True)
class ZooModel:
    """What differs between the models of the zoo, and nothing else: the one place a model's peculiarities live."""

    preprocessing: str  # BackbonePreprocess mode: the model's front, equal to `preprocess_input` for a backbone
    input_size: int  # the CNN's is only its default: train.cnn.image_size sets it
    application: Callable[..., keras.Model] | None = None  # the keras.applications constructor; None: from scratch
    preprocess_input: Callable | None = None  # keras.applications.<module>.preprocess_input, the reference
    weights_file: str | None = None  # file Keras looks for in $KERAS_HOME/models for weights="imagenet"

    @property
    def from_scratch(self) -> bool:
        """True for the custom CNN: no ImageNet backbone, trained on pixels (train.<name> is a CNN's section)."""
        return self.application is None


def _backbone(application, preprocess_input, preprocessing: str, input_size: int, weights_file: str) -> ZooModel:
    return ZooModel(preprocessing, input_size, application, preprocess_input, weights_file)


ZOO: dict[str, ZooModel] = {
    "cnn": ZooModel("unit", 128),
    "vgg16": _backbone(
        keras.applications.VGG16,
        keras.applications.vgg16.preprocess_input,
        "caffe",
        224,
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "resnet50": _backbone(
        keras.applications.ResNet50,
        keras.applications.resnet50.preprocess_input,
        "caffe",
        224,
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "mobilenetv2": _backbone(
        keras.applications.MobileNetV2,
        keras.applications.mobilenet_v2.preprocess_input,
        "tf",
        224,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    ),
    "inceptionv3": _backbone(
        keras.applications.InceptionV3,
        keras.applications.inception_v3.preprocess_input,
        "tf",
        299,
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    "efficientnetb0": _backbone(
        keras.applications.EfficientNetB0,
        keras.applications.efficientnet.preprocess_input,
        "none",
        224,
        "efficientnetb0_notop.h5",
    ),
}

MODEL_NAMES = tuple(ZOO)
BACKBONES = {name: entry for name, entry in ZOO.items() if not entry.from_scratch}  # the ImageNet ones
MIRROR_MEAN = "mirror_mean"  # the last layer of a model built with mirror_average


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights could not be loaded; the message says how to provide them."""


def zoo_model(name: str) -> ZooModel:
    """The zoo's entry for model `name`; the one check of a model name, with the names allowed."""
    if name not in ZOO:
        raise ValueError(f"unknown model {name!r}, expected one of: {', '.join(MODEL_NAMES)}")
    return ZOO[name]


def preprocessing_front(name: str) -> BackbonePreprocess:
    """Model `name`'s first layer: raw RGB in [0, 255] to what its features expect."""
    return BackbonePreprocess(zoo_model(name).preprocessing, name="preprocess")


def build_backbone(name: str, weights: str | None = "imagenet", image_size: int | None = None) -> keras.Model:
    """The headless ImageNet backbone, with `weights` = "imagenet", None/"none", or a weights file path."""
    spec = zoo_model(name)
    if spec.from_scratch:
        raise ValueError(f"{name} has no backbone; use build_model({name!r}, ...)")
    size = image_size or spec.input_size
    resolved = _resolve_weights(weights)
    try:
        backbone = spec.application(include_top=False, weights=resolved, input_shape=(size, size, 3))
    except Exception as exc:  # Keras raises a bare Exception when the download fails
        if resolved != "imagenet":
            raise
        raise WeightsUnavailableError(
            f"cannot load ImageNet weights for {name} ({exc}). Either put "
            f"{spec.weights_file} in a folder <dir>/models/ and set KERAS_HOME=<dir> (a writable folder), "
            f"or set train.{name}.weights to none in params.yaml."
        ) from exc
    backbone.name = f"{name}_backbone"
    return backbone


def build_model(
    name: str,
    num_classes: int,
    *,
    weights: str | None = "imagenet",
    image_size: int | None = None,
    dropout: float = 0.3,
    filters: tuple[int, ...] = (32, 64, 128),
    convs_per_block: int = 1,
    backbone: keras.Model | None = None,
    head: list[keras.layers.Layer] | None = None,
    mirror_average: bool = False,
) -> keras.Model:
    """A complete classifier taking raw RGB in [0, 255]: preprocessing, features, `pool`, dropout, `head`.

    Pass `backbone` and `head` to assemble a model from layers already trained elsewhere. With
    `mirror_average` (backbones only) each image also runs mirrored, and the model outputs the mean of
    the two softmaxes: twice the inference work.
    """
    spec = zoo_model(name)
    if num_classes < 2:
        raise ValueError(f"need at least 2 classes, got {num_classes}")
    if spec.from_scratch:
        if mirror_average:
            raise ValueError("mirror_average is for the backbones; the custom CNN trains on flips instead")
        return build_custom_cnn(num_classes, image_size=image_size, filters=filters,
                                convs_per_block=convs_per_block, dropout=dropout)
    backbone = backbone or build_backbone(name, weights, image_size)
    size = backbone.input_shape[1]
    pixels = keras.Input((size, size, 3), name="pixels")
    x = MirrorPair(name="mirror_pair")(pixels) if mirror_average else pixels
    x = preprocessing_front(name)(x)
    x = backbone(x)
    head = head or build_head(num_classes, dropout)
    if mirror_average:
        head = [*head, MirrorMean(name=MIRROR_MEAN)]
    return _attach_head(pixels, x, head, name)


def build_custom_cnn(
    num_classes: int, *, image_size: int | None = None, filters: tuple[int, ...] = (32, 64, 128),
    convs_per_block: int = 1, dropout: float = 0.25,
) -> keras.Model:
    """The from-scratch baseline: conv blocks of `convs_per_block` x (3x3 Conv2D, BatchNorm, ReLU), then
    MaxPool and Dropout; `filters` gives each block's width. `image_size` defaults to the zoo's entry's."""
    if convs_per_block < 1:
        raise ValueError(f"convs_per_block must be at least 1, got {convs_per_block}")
    image_size = image_size or ZOO["cnn"].input_size
    pixels = keras.Input((image_size, image_size, 3), name="pixels")
    x = preprocessing_front("cnn")(pixels)
    for block, width in enumerate(filters, start=1):
        for conv in range(1, convs_per_block + 1):
            # One conv per block keeps the names the first models were saved with.
            suffix = "" if convs_per_block == 1 else str(conv)
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"block{block}_conv{suffix}")(x)
            # momentum 0.9: running statistics settle within a few short epochs of training from scratch
            x = layers.BatchNormalization(momentum=0.9, name=f"block{block}_bn{suffix}")(x)
            x = layers.Activation("relu", name=f"block{block}_relu{suffix}")(x)
        x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
        x = layers.Dropout(dropout, name=f"block{block}_dropout")(x)
    return _attach_head(pixels, x, build_head(num_classes, dropout), "cnn")


def build_head(num_classes: int, dropout: float) -> list[keras.layers.Layer]:
    """The layers after the feature map, shared by the full model and the cached-feature training models."""
    return [
        layers.GlobalAveragePooling2D(name="pool"),
        layers.Dropout(dropout, name="head_dropout"),
        # float32 softmax even under mixed precision, for stable probabilities.
        layers.Dense(num_classes, activation="softmax", dtype="float32", name="head"),
    ]


def _attach_head(pixels, feature_map, head: list[keras.layers.Layer], name: str) -> keras.Model:
    x = feature_map
    for layer in head:
        x = layer(x)
    return keras.Model(pixels, x, name=name)


def split_for_fine_tuning(backbone: keras.Model, top_layers: int) -> tuple[keras.Model, keras.Model]:
    """Cut `backbone` into (lower, upper) so that `upper` holds at least `top_layers` layers.

    The cut is the shallowest one that still gives `upper` a single input: residual
    and Inception branches are never split, so `top_layers` rounds up to a whole
    block. Phase 2 trains `upper` on the cached output of `lower`. The two share
    their layers (and weights) with `backbone`.
    """
    if top_layers < 1:
        raise ValueError(f"top_layers must be at least 1, got {top_layers}")
    for index in range(len(backbone.layers) - 1, 0, -1):
        cut = backbone.layers[index].input
        if isinstance(cut, (list, tuple)):
            continue
        try:
            upper = keras.Model(cut, backbone.output, name=f"{backbone.name}_top")
        except ValueError:  # some tensor above the cut comes from below it
            continue
        if len(upper.layers) - 1 >= top_layers:  # minus the InputLayer
            lower = keras.Model(backbone.input, cut, name=f"{backbone.name}_bottom")
            return lower, upper
    raise ValueError(f"{backbone.name} has no clean cut with {top_layers} layers above it")


def _resolve_weights(weights: str | None) -> str | None:
    if weights is None or str(weights).lower() == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights)
    if not path.is_file():
        raise ValueError(f"weights file {weights!r} does not exist; expected imagenet, none or a path to a .h5 file")
    return str(path)
