"""The ImageNet head's view of a photo, as a branch of the deploy model that shares its frozen lower layers.

A fine-tuned backbone keeps its lower layers exactly as ImageNet trained them (training only moves the top
`fine_tune_layers`). The branch runs those shared layers once, then the ImageNet model's own upper layers and its
1000-class head, so the unknown-photo detector can ask how much of the photo ImageNet calls a fish (the classes
that `serving/catch_all.py` lists) at a small share of a second network's cost: for MobileNetV2 the branch's upper
part works on 7x7 feature maps.

The shared cut is found from the weights, not from params.yaml: the deepest cut below which every layer of the
deploy backbone equals the ImageNet model's, so a backbone trained from scratch (`weights: none`) shares nothing and
is refused. Building needs the ImageNet weights with the head (`include_top=True`), which Keras downloads, or finds
in `$KERAS_HOME/models`.
"""

from dataclasses import replace

import keras
import numpy as np

from fish_classifier.model.zoo import WeightsUnavailableError, split_for_fine_tuning, zoo_model
from fish_classifier.serving.inference import FEATURE_LAYER, IMAGENET


def imagenet_model(name: str) -> keras.Model:
    """Backbone `name` with its ImageNet weights and 1000-class head (Keras' `include_top=True` file)."""
    spec = zoo_model(name)
    if spec.from_scratch:
        raise ValueError(f"{name} has no ImageNet head: the ImageNet branch needs one of the backbones")
    try:
        return spec.application(include_top=True, weights="imagenet")
    except Exception as exc:  # Keras raises a bare Exception when the download fails
        raise WeightsUnavailableError(
            f"cannot load {name}'s ImageNet weights with the 1000-class head ({exc}), which the unknown-photo "
            f"detector's ImageNet branch needs (select.unknown_imagenet_weight). Either put Keras' include_top "
            f"weights file for {name} in <dir>/models/ and set KERAS_HOME=<dir> (a writable folder), or set "
            f"select.unknown_imagenet_weight to 0."
        ) from exc


def shared_split(backbone: keras.Model, reference: keras.Model) -> tuple[keras.Model, keras.Model, keras.Model]:
    """(lower, upper, reference_upper): `backbone` cut at the deepest single-tensor cut below which all its layers'
    weights equal `reference`'s, and `reference` (the ImageNet model with its head) cut at the same place. Layers
    are paired by position, not by name: Keras numbers unnamed layers (InceptionV3's convolutions, EfficientNet's
    normalization) per session, and the include_top model is the headless one's layers and then its head.
    `lower` and `upper` share their layers with `backbone`; ValueError when nothing is shared."""
    twins = _twins(backbone, reference)
    changed = [index for index, (layer, twin) in enumerate(twins) if not _same_weights(layer, twin)]
    # The cut with the fewest layers above it that still holds every changed layer (none changed: the top one).
    needed = len(backbone.layers) - min(changed, default=len(backbone.layers) - 1)
    lower, upper = split_for_fine_tuning(backbone, needed)
    if not lower.weights or not {id(backbone.layers[index]) for index in changed} <= {id(x) for x in upper.layers}:
        raise ValueError(f"{backbone.name} shares no layer with {reference.name}: its first layers are not "
                         "ImageNet's (was it trained with weights: none?), so it has no ImageNet branch to share")
    first = twins[backbone.layers.index(upper.layers[1])][1]  # the first layer above the cut, in `reference`
    return lower, upper, keras.Model(first.input, reference.output, name="imagenet_top")


def with_imagenet_branch(model, imagenet: keras.Model):
    """`model`'s graph called anew with its backbone cut where it stops sharing `imagenet`'s weights (`shared_split`),
    and `imagenet`'s upper layers on the shared ones: (pixels, the feature map, the pooled features, the
    probabilities, {IMAGENET: the ImageNet probabilities}), which `inference.serving_model` makes its outputs."""
    [backbone] = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    lower, upper, imagenet_upper = shared_split(backbone, imagenet)
    pixels = keras.Input(model.input_shape[1:], name=model.inputs[0].name)
    x = pixels
    for layer in model.layers[1:]:  # the chain build_model makes: [mirror pair], preprocess, backbone, pool, ...
        if layer is backbone:
            shared = lower(x)
            x, branch = upper(shared), imagenet_upper(shared)
        elif layer.name == FEATURE_LAYER:
            feature_map = x
            x = pooled = layer(x)
        else:
            x = layer(x)
    return pixels, feature_map, pooled, x, {IMAGENET: branch}


def branch_for(name: str, model_settings, unknown):
    """(`unknown` with its `imagenet_weight` settled, the ImageNet model with its head to branch from or None).

    No branch, and the weight 0, when select.unknown_imagenet_weight is 0 or deploy model `name` did not start from
    ImageNet's weights (the custom CNN, or `train.<name>.weights` none or a file of its own): then no layer is
    ImageNet's to share. `model_settings`: train.<name>; `unknown`: the detector's `UnknownSettings`."""
    if unknown.imagenet_weight <= 0 or zoo_model(name).from_scratch or model_settings.weights != "imagenet":
        return replace(unknown, imagenet_weight=0.0), None
    return unknown, imagenet_model(name)


def _twins(backbone: keras.Model, reference: keras.Model) -> list[tuple]:
    """Each layer of `backbone` with the layer in the same place of `reference`; ValueError when the two are not the
    same network (a layer of another kind or with weights of other shapes)."""
    twins = list(zip(backbone.layers, reference.layers))
    for layer, twin in twins:
        if type(layer) is not type(twin) or [w.shape for w in layer.weights] != [w.shape for w in twin.weights]:
            raise ValueError(f"{backbone.name} is not {reference.name} without its head: its layer {layer.name} "
                             f"({type(layer).__name__}) faces {twin.name} ({type(twin).__name__})")
    return twins


def _same_weights(layer, twin) -> bool:
    weights, theirs = layer.get_weights(), twin.get_weights()
    return all(np.array_equal(a, b) for a, b in zip(weights, theirs))
