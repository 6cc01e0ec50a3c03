"""training/transfer.py: the two phases of transfer learning on cached activations."""

import numpy as np
import pytest
from support.training_data import AUGMENTATION, TINY_BACKBONE, epoch_rates, settings, tiny_train_params

from fish_classifier.model.preprocessing import MirrorMean, MirrorPair
from fish_classifier.model.zoo import build_head
from fish_classifier.training.finite_loss import TrainingError
from fish_classifier.training.fit import choose_strategy
from fish_classifier.training.frozen_pass import FrozenPass
from fish_classifier.training.pixels import TrainingData
from fish_classifier.training.settings import BackboneSettings
from fish_classifier.training.trainer import train_model
from fish_classifier.training.transfer import (
    CachedActivations,
    extract_activations,
    fine_tune,
    fine_tune_learning_rate,
    fit_head,
)


@pytest.mark.slow
def test_augmented_views_each_take_one_frozen_pass_over_the_train_images(colour_data, monkeypatch):
    passes = []
    original = FrozenPass.__call__

    def recording(self, paths, split, mirror=False, augmentation=None, seed=()):
        passes.append((split, len(paths), mirror, augmentation is not None, tuple(seed)))
        return original(self, paths, split, mirror, augmentation, seed)

    monkeypatch.setattr(FrozenPass, "__call__", recording)
    params = tiny_train_params()
    params["mobilenetv2"] = dict(params["mobilenetv2"], mirror_train=True, augmented_views=2)
    model = train_model("mobilenetv2", colour_data, settings("mobilenetv2", params), seed=5, augmentation=AUGMENTATION)
    n = len(colour_data.train_paths)
    assert passes == [
        ("train", n, False, False, ()),
        ("train, mirrored", n, True, False, ()),
        ("train, augmented view 1 of 2", n, False, True, (5, 0)),
        ("train, augmented view 2 of 2", n, False, True, (5, 1)),
        ("val", len(colour_data.val_paths), False, False, ()),
    ]
    assert model.output_shape == (None, 3)


def test_cached_activations_stack_the_copies_after_the_originals_with_their_labels():
    """Rows: the train images, then their mirrored copy, then each augmented view; labels tiled to match."""
    codes = {"train": 0, "train, mirrored": 1, "train, augmented view 1 of 2": 2,
             "train, augmented view 2 of 2": 3, "val": 9}

    def frozen(paths, split, mirror=False, augmentation=None, seed=()):
        # Each row says which pass made it (tens) and which image it is (units).
        return np.array([[10 * codes[split] + i] for i in range(len(paths))], dtype="float32")

    data = TrainingData([{"label": "a"}, {"label": "b"}], ["x", "y"], np.array([0, 1]), ["v"], np.array([1]))
    backbone = BackboneSettings.model_validate(dict(TINY_BACKBONE, mirror_train=True, augmented_views=2))
    cached = extract_activations(frozen, data, backbone, choose_strategy("default"), AUGMENTATION, seed=0)
    assert cached.train[:, 0].tolist() == [0, 1, 10, 11, 20, 21, 30, 31]
    assert cached.train_labels.tolist() == [0, 1] * 4
    assert cached.train_size == 8
    assert cached.val[:, 0].tolist() == [90] and cached.val_labels.tolist() == [1]


def test_augmented_views_need_the_augmentation_ranges(colour_data):
    params = tiny_train_params()
    params["vgg16"] = dict(params["vgg16"], augmented_views=1)
    with pytest.raises(ValueError, match="train.vgg16.augmented_views is 1 but no augmentation ranges were given"):
        train_model("vgg16", colour_data, settings("vgg16", params), seed=0)


@pytest.mark.slow
def test_mirror_average_is_built_into_the_trained_model(colour_data):
    params = tiny_train_params()
    params["mobilenetv2"] = dict(params["mobilenetv2"], mirror_average=True)
    model = train_model("mobilenetv2", colour_data, settings("mobilenetv2", params), seed=1)
    assert isinstance(model.get_layer("mirror_pair"), MirrorPair) and isinstance(model.layers[-1], MirrorMean)
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
    # A left-right mirror of the photo gets the very same answer: the model averages both views.
    np.testing.assert_allclose(np.asarray(model(pixels)), np.asarray(model(pixels[:, :, ::-1])), atol=1e-6)


def test_fine_tuning_trains_the_layers_above_the_cut_but_not_their_batchnorm(colour_data):
    import keras

    class Snapshots(keras.callbacks.Callback):
        """Every weight of the model being fitted, by path, when each fit starts and ends."""

        def __init__(self):
            super().__init__()
            self.seen = []

        def on_train_begin(self, logs=None):
            self.seen.append({w.path: np.array(w) for w in self.model.weights})

        def on_train_end(self, logs=None):
            self.seen.append({w.path: np.array(w) for w in self.model.weights})

    snapshots = Snapshots()
    train_model("mobilenetv2", colour_data, settings("mobilenetv2"), seed=1, callbacks=[snapshots])
    assert len(snapshots.seen) == 4  # the head phase, then fine-tuning
    start, end = snapshots.seen[2:]
    moved = {path for path in start if not np.array_equal(start[path], end[path])}
    # fine_tune_layers 3 cuts MobileNetV2 above block_16: Conv_1, Conv_1_bn and out_relu.
    assert any("Conv_1/kernel" in path for path in moved)
    assert not any("Conv_1_bn" in path for path in moved)  # BatchNorm stays on its statistics and scale
    assert any(path.startswith("head/") for path in moved)


def test_fine_tune_rate_is_held_or_decayed_along_a_cosine_to_zero():
    def backbone(schedule):
        return BackboneSettings.model_validate(dict(TINY_BACKBONE, fine_tune_lr=3e-4, fine_tune_schedule=schedule))

    assert fine_tune_learning_rate(backbone("constant"), steps=100) == 3e-4
    cosine = fine_tune_learning_rate(backbone("cosine"), steps=100)
    rates = [float(cosine(step)) for step in (0, 50, 100, 150)]
    np.testing.assert_allclose(rates, [3e-4, 1.5e-4, 0.0, 0.0], atol=1e-10)


@pytest.mark.slow
def test_cosine_schedule_spans_exactly_the_steps_of_phase_2(colour_data):
    rates = epoch_rates()
    params = tiny_train_params()
    params["mobilenetv2"] = dict(params["mobilenetv2"], fine_tune_schedule="cosine", head_epochs=2, fine_tune_epochs=2,
                                 fine_tune_lr=4e-4, patience=5, mirror_train=True)
    train_model("mobilenetv2", colour_data, settings("mobilenetv2", params), seed=1, callbacks=[rates])
    # Two head epochs at head_lr, then the cosine over both fine-tuning epochs' steps (train and mirror images):
    # half-way down after the first, at zero after the second.
    np.testing.assert_allclose(rates.rates, [0.01, 0.01, 2e-4, 0.0], rtol=1e-5, atol=1e-10)


def _nan_activations() -> CachedActivations:
    """Cached activations (2x2x8 at the cut) of 12 train and 6 val images, one train row NaN: the frozen pass's
    output as a broken backbone would give it."""
    rng = np.random.default_rng(0)
    train = rng.normal(size=(12, 2, 2, 8)).astype("float32")
    train[5] = np.nan
    return CachedActivations(train=train, train_labels=np.arange(12) % 3, train_size=12,
                             val=rng.normal(size=(6, 2, 2, 8)).astype("float32"), val_labels=np.arange(6) % 3)


FIT_OPTIONS = {"batch_size": 4, "class_weight": None, "callbacks": [], "verbose": 0}


def test_the_head_phase_of_transfer_learning_fails_on_a_nan_loss():
    backbone = BackboneSettings.model_validate(TINY_BACKBONE)
    with pytest.raises(TrainingError) as caught:
        fit_head("vgg16", _nan_activations(), None, build_head(3, 0.1), backbone, choose_strategy("default"),
                 FIT_OPTIONS)
    assert str(caught.value) == "vgg16 head: loss became nan in epoch 1; lower train.vgg16.head_lr (0.01) in params.yaml"


def test_the_fine_tuning_phase_fails_on_a_nan_loss():
    import keras

    activations = keras.Input((2, 2, 8))
    upper = keras.Model(activations, keras.layers.Conv2D(8, 1, name="top_conv")(activations), name="upper")
    backbone = BackboneSettings.model_validate(TINY_BACKBONE)
    with pytest.raises(TrainingError) as caught:
        fine_tune("resnet50", _nan_activations(), upper, build_head(3, 0.1), backbone, choose_strategy("default"),
                  FIT_OPTIONS)
    assert str(caught.value) == ("resnet50 fine-tuning: loss became nan in epoch 1; lower train.resnet50.fine_tune_lr "
                                 "(0.0001) in params.yaml")
