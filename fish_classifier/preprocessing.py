"""Each backbone's own input preprocessing, as a Keras layer saved inside the model.

A saved model therefore takes raw RGB pixels in [0, 255], and nobody can feed it
the wrong scaling later: the mistake that sank ResNet50 and EfficientNetB0 in
the project this one replaces.
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


def load_model(path):
    """Load a saved `.keras` model of this project (default safe_mode: no arbitrary code)."""
    return keras.saving.load_model(path, compile=False)
