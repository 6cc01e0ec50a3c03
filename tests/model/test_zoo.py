import dataclasses

import keras
import numpy as np
import pytest
from support.synthetic_images import known_image

from fish_classifier.model import zoo
from fish_classifier.model.preprocessing import BackbonePreprocess

# Written out here, independently of the zoo's table, so a wrong entry there cannot pass.
REFERENCE_PREPROCESS = {
    "vgg16": keras.applications.vgg16.preprocess_input,
    "resnet50": keras.applications.resnet50.preprocess_input,
    "mobilenetv2": keras.applications.mobilenet_v2.preprocess_input,
    "inceptionv3": keras.applications.inception_v3.preprocess_input,
    "efficientnetb0": keras.applications.efficientnet.preprocess_input,
}


@pytest.fixture(scope="module")
def built_models():
    return {name: zoo.build_model(name, 4, weights=None) for name in zoo.BACKBONES}


@pytest.mark.parametrize("name", list(zoo.BACKBONES))
def test_built_in_preprocessing_equals_keras_preprocess_input(built_models, name):
    model = built_models[name]
    size = zoo.BACKBONES[name].input_size
    pixels = known_image(size)
    inside = keras.Model(model.input, model.get_layer("preprocess").output)(pixels)
    expected = REFERENCE_PREPROCESS[name](pixels.copy())
    np.testing.assert_allclose(np.asarray(inside), np.asarray(expected), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("name,size", [("vgg16", 224), ("resnet50", 224), ("mobilenetv2", 224),
                                       ("inceptionv3", 299), ("efficientnetb0", 224)])
def test_backbone_input_sizes_and_named_layers(built_models, name, size):
    model = built_models[name]
    assert model.input_shape == (None, size, size, 3)
    assert model.output_shape == (None, 4)
    assert isinstance(model.get_layer("pool"), keras.layers.GlobalAveragePooling2D)
    assert model.get_layer("head").activation is keras.activations.softmax


def test_custom_cnn_has_three_conv_blocks_then_pooling_and_softmax():
    model = zoo.build_model("cnn", 5, image_size=64)
    kinds = [type(layer).__name__ for layer in model.layers]
    for block in (1, 2, 3):
        names = [f"block{block}_conv", f"block{block}_bn", f"block{block}_pool", f"block{block}_dropout"]
        types = [type(model.get_layer(n)).__name__ for n in names]
        assert types == ["Conv2D", "BatchNormalization", "MaxPooling2D", "Dropout"]
    assert kinds.count("Conv2D") == 3
    assert isinstance(model.get_layer("pool"), keras.layers.GlobalAveragePooling2D)
    assert model.output_shape == (None, 5)
    assert model.get_layer("preprocess").mode == "unit"


def test_custom_cnn_stacks_convs_per_block_before_each_pool():
    model = zoo.build_model("cnn", 4, image_size=32, filters=(8, 16), convs_per_block=2)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.name, c.filters) for c in convs] == [
        ("block1_conv1", 8), ("block1_conv2", 8), ("block2_conv1", 16), ("block2_conv2", 16)]
    names = [layer.name for layer in model.layers]
    assert names.index("block1_relu2") < names.index("block1_pool") < names.index("block2_conv1")
    assert model.get_layer("block2_pool").output.shape[1:3] == (8, 8)  # one halving per block, not per conv
    with pytest.raises(ValueError, match="convs_per_block must be at least 1, got 0"):
        zoo.build_model("cnn", 4, image_size=32, convs_per_block=0)


def test_unknown_model_name_lists_the_choices():
    with pytest.raises(ValueError, match="unknown model 'resnet', expected one of: cnn, vgg16, resnet50"):
        zoo.build_model("resnet", 3)


def test_missing_weights_file_is_named():
    with pytest.raises(ValueError, match="weights file 'nowhere.h5' does not exist"):
        zoo.build_backbone("mobilenetv2", "nowhere.h5")


def test_failed_imagenet_download_says_how_to_fix(monkeypatch):
    def offline(**kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3]")

    monkeypatch.setitem(zoo.ZOO, "resnet50", dataclasses.replace(zoo.ZOO["resnet50"], application=offline))
    with pytest.raises(zoo.WeightsUnavailableError) as error:
        zoo.build_backbone("resnet50", "imagenet")
    message = str(error.value)
    assert "KERAS_HOME" in message
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "train.resnet50.weights to none" in message


@pytest.mark.parametrize("name,top", [("mobilenetv2", 10), ("resnet50", 10), ("vgg16", 4), ("inceptionv3", 20)])
def test_fine_tuning_cut_keeps_the_backbone_function(built_models, name, top):
    backbone = built_models[name].get_layer(f"{name}_backbone")
    lower, upper = zoo.split_for_fine_tuning(backbone, top)
    assert len(upper.layers) - 1 >= top
    # Every layer sits on exactly one side of the cut.
    lower_names = {layer.name for layer in lower.layers[1:]}
    upper_names = {layer.name for layer in upper.layers[1:]}
    assert not lower_names & upper_names
    assert len(lower_names | upper_names) == len(backbone.layers) - 1
    x = np.random.default_rng(0).uniform(-1, 1, (1, *backbone.input_shape[1:])).astype("float32")
    np.testing.assert_allclose(upper(lower(x)), backbone(x), rtol=1e-4, atol=1e-4)


def test_the_custom_cnn_refuses_mirror_average():
    with pytest.raises(ValueError, match="mirror_average is for the backbones"):
        zoo.build_model("cnn", 3, image_size=32, mirror_average=True)


def test_the_cnn_is_an_entry_of_the_one_table_trained_from_scratch():
    assert zoo.MODEL_NAMES == tuple(zoo.ZOO) and zoo.MODEL_NAMES[0] == "cnn"
    assert zoo.ZOO["cnn"].from_scratch and zoo.ZOO["cnn"].preprocessing == "unit"
    assert not any(zoo.ZOO[name].from_scratch for name in zoo.BACKBONES)
    assert set(zoo.BACKBONES) == set(zoo.MODEL_NAMES) - {"cnn"}
    with pytest.raises(ValueError, match=r"cnn has no backbone; use build_model\('cnn', ...\)"):
        zoo.build_backbone("cnn", None)


@pytest.mark.parametrize("name", zoo.MODEL_NAMES)
def test_the_preprocessing_front_maps_raw_pixels_as_the_model_expects(name):
    front = zoo.preprocessing_front(name)
    assert isinstance(front, BackbonePreprocess) and front.name == "preprocess"
    pixels = known_image(16)
    reference = {"cnn": lambda x: x / 255.0, **REFERENCE_PREPROCESS}[name]
    np.testing.assert_allclose(np.asarray(front(pixels)), np.asarray(reference(pixels.copy())), rtol=1e-6, atol=1e-4)


def test_an_unknown_name_is_refused_by_the_table_lookup_with_the_choices():
    with pytest.raises(ValueError) as refused:
        zoo.zoo_model("resnet")
    assert str(refused.value) == ("unknown model 'resnet', expected one of: cnn, vgg16, resnet50, mobilenetv2, "
                                  "inceptionv3, efficientnetb0")
