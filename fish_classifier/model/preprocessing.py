"""Each backbone's own input preprocessing, as a Keras layer saved inside the model.

A saved model therefore takes raw RGB pixels in [0, 255], and nobody can feed it
the wrong scaling later: the mistake that sank ResNet50 and EfficientNetB0 in
the project this one replaces.

`MirrorPair` and `MirrorMean` are the model's optional test-time mirror averaging: each
image also goes through the network flipped left-right, and the two answers are averaged
(a fish facing left is the same species facing right).
"""

import keras
from keras import ops

# Keras's own `preprocess_input` modes, by backbone:
#   caffe: RGB -> BGR, then subtract the ImageNet channel means (VGG16, ResNet50)
#   tf:    scale to [-1, 1] (MobileNetV2, InceptionV3)
#   none:  the backbone normalises internally and wants [0, 255] (EfficientNetB0)
#   unit:  scale to [0, 1] (the custom CNN)
MODES = ("caffe", "tf", "none", "unit")
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="fish_classifier")
class BackbonePreprocess(keras.layers.Layer):
    """Maps raw RGB in [0, 255] to what a backbone expects, exactly as its `preprocess_input` does."""

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"unknown preprocessing mode {mode!r}, expected one of: {', '.join(MODES)}")
        self.mode = mode

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            bgr = ops.flip(x, axis=-1)
            return bgr - ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "unit":
            return x / 255.0
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="fish_classifier")
class MirrorPair(keras.layers.Layer):
    """(n, h, w, c) images -> (2n, h, w, c): the n images, then the same n mirrored left-right."""

    def call(self, inputs):
        return ops.concatenate([inputs, ops.flip(inputs, axis=2)], axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="fish_classifier")
class MirrorMean(keras.layers.Layer):
    """Folds the 2n results of a `MirrorPair` batch back to n: the mean of each image's two results.

    With `maps=True` the results are (2n, h, w, k) maps, and the mirrored half is flipped back
    first so that both halves line up with the original image.
    """

    def __init__(self, maps: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.maps = maps

    def call(self, inputs):
        # (2n, ...) -> (2, n, ...): reshape, not a split, so the batch size may stay unknown.
        pairs = ops.reshape(inputs, (2, -1, *inputs.shape[1:]))
        original, mirrored = pairs[0], pairs[1]
        if self.maps:
            mirrored = ops.flip(mirrored, axis=2)
        return (original + mirrored) / 2

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "maps": self.maps}


def load_model(path):
    """Load a saved `.keras` model of this project (default safe_mode: no arbitrary code)."""
    return keras.saving.load_model(path, compile=False)
