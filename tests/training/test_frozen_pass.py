"""training/frozen_pass.py: the one pass of the frozen layers, in LiteRT or Keras, and the runtime chosen for it."""

import numpy as np
import pytest
from support.training_data import AUGMENTATION

from fish_classifier.model.zoo import build_backbone, split_for_fine_tuning
from fish_classifier.training.frozen_pass import FrozenPass, choose_frozen_pass_runtime, frozen_extractor


def test_frozen_pass_runtime_is_checked_and_auto_follows_the_hardware():
    import tensorflow as tf

    with pytest.raises(ValueError, match="unknown train.frozen_pass 'onnx', expected one of: auto, litert, keras"):
        choose_frozen_pass_runtime("onnx")
    assert choose_frozen_pass_runtime("keras") == "keras"
    assert choose_frozen_pass_runtime("auto") == ("keras" if tf.config.list_logical_devices("GPU") else "litert")


# Between them, the two preprocessing modes "tf" and "caffe", and a cut inside a residual network.
@pytest.mark.parametrize("name", ["mobilenetv2", pytest.param("resnet50", marks=pytest.mark.slow)])
def test_litert_frozen_pass_gives_the_keras_activations_row_for_row(colour_data, name):
    """Same images, same order, same numbers (to float32 rounding), mirrored and augmented copies included."""
    backbone = build_backbone(name, None, image_size=64)
    lower, _ = split_for_fine_tuning(backbone, 3)
    extractor = frozen_extractor(name, lower, 64)
    paths = colour_data.train_paths
    keras_pass, litert_pass = FrozenPass(extractor, "keras", 8), FrozenPass(extractor, "litert", 8)
    for options in ({}, {"mirror": True}, {"augmentation": AUGMENTATION, "seed": (3, 1)}):
        expected = keras_pass(paths, "train", **options)
        got = litert_pass(paths, "train", **options)
        assert got.shape == expected.shape == (len(paths), *extractor.output_shape[1:])
        scale = np.abs(expected).max()
        assert scale > 0
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * scale)
    # Mirroring changes the activations, so the check above compared something real.
    assert np.abs(litert_pass(paths, "train", mirror=True) - litert_pass(paths, "train")).max() > 1e-3 * scale


@pytest.mark.parametrize("name", ["mobilenetv2", "vgg16"])
def test_the_extractor_starts_with_the_zoo_s_preprocessing_front(name):
    from fish_classifier.model.zoo import ZOO

    backbone = build_backbone(name, None, image_size=32)
    lower, _ = split_for_fine_tuning(backbone, 3)
    extractor = frozen_extractor(name, lower, 32)
    front = extractor.get_layer("preprocess")
    assert front.mode == ZOO[name].preprocessing
    assert extractor.input_shape == (None, 32, 32, 3) and extractor.output_shape == lower.output_shape
