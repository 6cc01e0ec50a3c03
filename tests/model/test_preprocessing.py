"""The preprocessing a saved model carries inside it, and its test-time mirror averaging."""

import keras
import numpy as np
from support.synthetic_images import known_image

from fish_classifier.model import zoo
from fish_classifier.model.preprocessing import BackbonePreprocess, MirrorMean, MirrorPair, load_model


def test_saved_model_takes_raw_pixels_and_loads_in_safe_mode(tmp_path):
    model = zoo.build_model("resnet50", 4, weights=None)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)  # safe_mode=True is Keras's default
    pixels = known_image(224)
    np.testing.assert_allclose(loaded(pixels), model(pixels), atol=1e-6)
    assert isinstance(loaded.get_layer("preprocess"), BackbonePreprocess)
    assert loaded.get_layer("preprocess").mode == "caffe"


def _mirror_pair_of_models(tmp_path, size=64):
    """One set of untrained weights, built as a plain model and as a mirror-averaging one, both saved and reloaded."""
    backbone, head = zoo.build_backbone("mobilenetv2", None, image_size=size), zoo.build_head(3, 0.1)
    plain = zoo.build_model("mobilenetv2", 3, backbone=backbone, head=head)
    mirrored = zoo.build_model("mobilenetv2", 3, backbone=backbone, head=head, mirror_average=True)
    plain.save(tmp_path / "plain.keras")
    mirrored.save(tmp_path / "mirrored.keras")
    return load_model(tmp_path / "plain.keras"), load_model(tmp_path / "mirrored.keras")


def test_mirror_average_outputs_the_mean_of_a_photo_and_its_mirror(tmp_path):
    plain, mirrored = _mirror_pair_of_models(tmp_path)
    pixels = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype("float32")
    expected = (np.asarray(plain(pixels)) + np.asarray(plain(pixels[:, :, ::-1]))) / 2
    np.testing.assert_allclose(np.asarray(mirrored(pixels)), expected, atol=1e-6)
    assert mirrored.output_shape == (None, 3)
    assert isinstance(mirrored.get_layer("mirror_pair"), MirrorPair)
    assert isinstance(mirrored.layers[-1], MirrorMean)


def test_mirror_mean_flips_mirrored_maps_back_before_averaging():
    maps = np.arange(12, dtype="float32").reshape(2, 2, 3, 1)  # (2n, h, w, k) with n = 1
    folded = np.asarray(MirrorMean(maps=True)(maps))
    np.testing.assert_array_equal(folded, (maps[:1] + maps[1:, :, ::-1]) / 2)
    np.testing.assert_array_equal(np.asarray(MirrorMean()(maps)), (maps[:1] + maps[1:]) / 2)
