"""training/settings.py: params.yaml's `train` read for one model, its section chosen by the zoo."""

import pytest
from support.training_data import settings, tiny_train_params

from fish_classifier.training.settings import BackboneSettings
from fish_classifier.training.trainer import train_model


def test_settings_read_for_one_model_take_its_section_and_leave_the_others_alone():
    params = tiny_train_params(models=["cnn", "vgg16"])
    params["vgg16"] = {"dropout": "broken"}  # not vgg16's turn: not read
    read = settings("mobilenetv2", params)
    assert isinstance(read.model, BackboneSettings) and read.model.head_epochs == 2 and read.batch_size == 8
    with pytest.raises(ValueError, match="the settings of train.cnn are BackboneSettings"):
        train_model("cnn", None, read, seed=0)


def test_each_model_reads_the_section_its_zoo_entry_asks_for():
    from fish_classifier.model.zoo import MODEL_NAMES, ZOO
    from fish_classifier.training.settings import CnnSettings, model_section

    assert {name: model_section(name) for name in MODEL_NAMES} == {
        name: CnnSettings if ZOO[name].from_scratch else BackboneSettings for name in MODEL_NAMES}
    assert model_section("cnn") is CnnSettings and model_section("vgg16") is BackboneSettings
    with pytest.raises(ValueError, match="unknown model 'resnet', expected one of: cnn, vgg16"):
        settings("resnet")
