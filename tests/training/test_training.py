import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import yaml
from support import REPO_ROOT
from support.training_data import COLOURS, TINY_BACKBONE, settings, tiny_train_params, write_colour_images

from fish_classifier.data.augment import Augmentation
from fish_classifier.data.manifest import DatasetError, label_indices
from fish_classifier.images import load_pixels, open_rgb
from fish_classifier.model.preprocessing import MirrorMean, MirrorPair, load_model
from fish_classifier.model.zoo import MODEL_NAMES, build_backbone, build_head, split_for_fine_tuning
from fish_classifier.training import trainer
from fish_classifier.training.trainer import (
    BackboneSettings,
    CachedActivations,
    FiniteLoss,
    FrozenPass,
    TrainingData,
    TrainingError,
    choose_frozen_pass_runtime,
    choose_strategy,
    class_weights,
    cnn_augmenter,
    extract_activations,
    fine_tune,
    fine_tune_learning_rate,
    fit_head,
    frozen_extractor,
    load_training_data,
    pixel_dataset,
    train_model,
    training_loss,
)

AUGMENTATION = Augmentation(max_rotation=30, max_zoom=0.3, brightness=0.4, contrast=0.4)


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("colours")
    rows = write_colour_images(folder)
    classes = [{"label": label, "display": label.title()} for label in sorted(COLOURS)]
    paths = [path for path, _ in rows]
    labels = label_indices([label for _, label in rows], classes)
    return TrainingData(classes, paths, labels, paths, labels)


def test_label_indices_follow_classes_order_and_reject_unknown_labels():
    classes = [{"label": "b"}, {"label": "a"}]
    assert label_indices(["a", "b", "a"], classes).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="labels not in classes.json: c"):
        label_indices(["a", "c"], classes)


def test_class_weights_are_inverse_frequency():
    # 4 samples, 2 classes: weight = 4 / (2 * count) -> class 0: 4/6, class 1: 4/2; class 2 absent keeps 1.
    weights = class_weights(np.array([0, 0, 0, 1]), 3)
    assert weights == pytest.approx({0: 2 / 3, 1: 2.0, 2: 1.0})


def test_training_loss_is_cross_entropy_against_smoothed_one_hot_labels():
    probabilities = np.array([[0.9, 0.1]], dtype="float32")
    plain = training_loss(0.0)(np.array([[1.0, 0.0]]), probabilities)
    assert float(plain) == pytest.approx(-np.log(0.9), rel=1e-5)
    # Smoothing 0.1 over two classes makes the target [0.95, 0.05]: -(0.95 ln 0.9 + 0.05 ln 0.1) = 0.215221.
    smoothed = training_loss(0.1)(np.array([[1.0, 0.0]]), probabilities)
    assert float(smoothed) == pytest.approx(0.215221, rel=1e-5)


def test_unknown_strategy_is_rejected():
    with pytest.raises(ValueError, match="unknown strategy 'tpu', expected one of: auto, default, mirrored, multi_worker"):
        choose_strategy("tpu")


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


def test_augmented_pixels_are_fixed_by_the_seed_and_the_image_index(colour_data):
    """Image i is changed with the generator seeded (*seed, i), whatever order parallel decoding finishes in."""
    augmentation = AUGMENTATION
    paths = colour_data.train_paths[:6]

    def pixels(seed):
        return np.stack(list(pixel_dataset(paths, None, 32, augmentation, seed).as_numpy_iterator()))

    view = pixels((7, 0))
    for i, path in enumerate(paths):
        expected = load_pixels(augmentation.apply(open_rgb(path), np.random.default_rng([7, 0, i])), 32)
        np.testing.assert_array_equal(view[i], expected)
    np.testing.assert_array_equal(pixels((7, 0)), view)
    assert np.abs(pixels((7, 1)) - view).max() > 10  # another view, other changes
    plain = np.stack(list(pixel_dataset(paths, None, 32).as_numpy_iterator()))
    assert np.abs(plain - view).max() > 10


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


def test_cnn_augmenter_changes_batches_within_the_augment_ranges():
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    # Zero ranges leave only the left-right flip: each image comes out as it was or mirrored, both happen.
    flips_only = np.asarray(cnn_augmenter(Augmentation(max_rotation=0, max_zoom=0, brightness=0, contrast=0))(
        pixels, training=True))
    kept = [np.allclose(out, image, atol=1e-3) for out, image in zip(flips_only, pixels)]
    mirrored = [np.allclose(out, image[:, ::-1], atol=1e-3) for out, image in zip(flips_only, pixels)]
    assert all(k or m for k, m in zip(kept, mirrored)) and any(kept) and any(mirrored)

    augmenter = cnn_augmenter(AUGMENTATION)  # 30 degrees, zoom in up to 1.3x, brightness and contrast +/- 0.4
    layers = {type(layer).__name__: layer for layer in augmenter.layers}
    assert layers["RandomFlip"].mode == "horizontal"
    assert layers["RandomRotation"].factor == pytest.approx((-30 / 360, 30 / 360))
    assert 1 / (1 + layers["RandomZoom"].height_factor[0]) == pytest.approx(1.3)  # Keras samples a 1/1.3 share
    assert layers["RandomZoom"].height_factor[1] == 0 and layers["RandomZoom"].width_factor is None
    assert layers["RandomBrightness"].factor == pytest.approx((-0.4, 0.4))
    assert layers["RandomContrast"].factor == pytest.approx((0.4, 0.4))  # Keras draws 1 - 0.4 to 1 + 0.4
    assert list(layers["RandomBrightness"].value_range) == [0, 255] == list(layers["RandomContrast"].value_range)
    changed = np.asarray(augmenter(pixels, training=True))
    assert changed.shape == pixels.shape and changed.dtype == np.float32
    assert changed.min() >= 0 and changed.max() <= 255
    assert all(np.abs(out - image).mean() > 5 and np.abs(out - image[:, ::-1]).mean() > 5
               for out, image in zip(changed, pixels))
    np.testing.assert_array_equal(np.asarray(augmenter(pixels, training=False)), pixels)  # and never at inference

    # Contrast goes both ways: some images come out flatter, some sharper (flips leave the spread as it is).
    contrast_only = cnn_augmenter(Augmentation(max_rotation=0, max_zoom=0, brightness=0, contrast=0.4))
    mid_grey = rng.uniform(96, 160, (32, 8, 8, 3)).astype("float32")  # never clipped at 0.6x to 1.4x contrast
    spread = np.asarray(contrast_only(mid_grey, training=True)).std(axis=(1, 2, 3)) / mid_grey.std(axis=(1, 2, 3))
    assert spread.min() < 0.9 and spread.max() > 1.1 and 0.6 - 1e-3 <= spread.min() and spread.max() <= 1.4 + 1e-3


def test_the_cnn_augments_each_batch_within_its_own_ranges(colour_data, monkeypatch):
    params = tiny_train_params()
    params["cnn"] = dict(params["cnn"], augment=True, epochs=1, augment_ranges=AUGMENTATION.model_dump())
    read = settings("cnn", params)
    assert read.model.augment_ranges == AUGMENTATION
    built = []
    monkeypatch.setattr(trainer, "cnn_augmenter", lambda ranges: built.append(ranges) or cnn_augmenter(ranges))
    model = train_model("cnn", colour_data, read, seed=0)  # the augment stage's ranges play no part
    assert built == [AUGMENTATION] and model.output_shape == (None, 3)


def test_training_data_joins_augmented_rows_to_train(tmp_path):
    columns = ["path", "split", "label", "sha256", "width", "height", "augmented", "source"]
    manifest = pd.DataFrame(
        [["a.jpg", "train", "x", "1", 8, 8, False, ""], ["b.jpg", "val", "y", "2", 8, 8, False, ""],
         ["d.jpg", "val", "x", "5", 8, 8, False, ""], ["c.jpg", "test", "y", "3", 8, 8, False, ""]], columns=columns)
    augmented = pd.DataFrame([["aug/a0.png", "train", "y", "4", 8, 8, True, "a.jpg"]], columns=columns)
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    augmented.to_csv(tmp_path / "augmented.csv", index=False)
    (tmp_path / "classes.json").write_text(json.dumps({"classes": [{"label": "x"}, {"label": "y"}]}))
    data = load_training_data(tmp_path / "manifest.csv", tmp_path / "augmented.csv", tmp_path / "classes.json")
    assert data.train_paths == ["a.jpg", "aug/a0.png"]
    assert data.train_labels.tolist() == [0, 1]
    assert data.val_paths == ["b.jpg", "d.jpg"] and data.val_labels.tolist() == [1, 0]


@pytest.mark.parametrize(
    "name", [name if name in ("cnn", "mobilenetv2") else pytest.param(name, marks=pytest.mark.slow) for name in MODEL_NAMES])
def test_every_model_trains_end_to_end_without_weights(colour_data, name, tmp_path):
    model = train_model(name, colour_data, settings(name), seed=1)
    assert model.output_shape == (None, 3)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = load_model(path)
    size = reloaded.input_shape[1]
    pixels = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    probabilities = np.asarray(reloaded(pixels))
    np.testing.assert_allclose(probabilities, np.asarray(model(pixels)), atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


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


def test_settings_read_for_one_model_take_its_section_and_leave_the_others_alone():
    params = tiny_train_params(models=["cnn", "vgg16"])
    params["vgg16"] = {"dropout": "broken"}  # not vgg16's turn: not read
    read = settings("mobilenetv2", params)
    assert isinstance(read.model, BackboneSettings) and read.model.head_epochs == 2 and read.batch_size == 8
    with pytest.raises(ValueError, match="the settings of train.cnn are BackboneSettings"):
        train_model("cnn", None, read, seed=0)


def epoch_rates():
    """A Keras callback that records the optimizer's learning rate at the end of each epoch, in `.rates`."""
    import keras

    class EpochRates(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rates = []

        def on_epoch_end(self, epoch, logs=None):
            self.rates.append(float(self.model.optimizer.learning_rate))

    return EpochRates()


def test_the_cnn_learning_rate_decays_along_a_cosine_over_all_its_epochs(colour_data):
    rates = epoch_rates()
    params = tiny_train_params()
    params["cnn"] = dict(params["cnn"], epochs=4, patience=4, lr=0.02, lr_schedule="cosine", convs_per_block=2)
    model = train_model("cnn", colour_data, settings("cnn", params), seed=0, callbacks=[rates])
    # cos(pi * k / 4) after each epoch k of 4: half-way after the second, zero at the end.
    expected = [0.01 * (1 + np.cos(np.pi * k / 4)) for k in (1, 2, 3, 4)]
    np.testing.assert_allclose(rates.rates, expected, rtol=1e-5, atol=1e-10)
    assert model.get_layer("block3_conv2").filters == 16


def test_an_unknown_learning_rate_schedule_is_named():
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear', expected one of: constant, cosine"):
        trainer.learning_rate(1e-3, "linear", steps=10)


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


# --- a fit whose loss goes nan or infinite fails, naming the model, the epoch and the knob -------------------------


def test_a_nan_or_infinite_loss_is_named_with_the_fit_the_epoch_and_the_learning_rate():
    guard = FiniteLoss("cnn", "train.cnn.lr", 0.003)
    guard.on_epoch_end(0, {"loss": 1.2, "val_loss": 1.4})  # finite: nothing happens
    with pytest.raises(TrainingError) as caught:
        guard.on_epoch_end(2, {"loss": np.float32("nan"), "val_loss": 1.0})
    assert str(caught.value) == "cnn: loss became nan in epoch 3; lower train.cnn.lr (0.003) in params.yaml"
    with pytest.raises(TrainingError) as caught:
        FiniteLoss("vgg16 head", "train.vgg16.head_lr", 1e-3).on_epoch_end(0, {"loss": 0.5, "val_loss": float("inf")})
    assert str(caught.value) == ("vgg16 head: validation loss became inf in epoch 1; lower train.vgg16.head_lr (0.001) "
                                 "in params.yaml")


def test_a_cnn_whose_loss_goes_nan_raises_instead_of_returning_a_model(colour_data):
    """`train.cnn.lr: .inf` (refused now by params) trained a model of NaNs that the stage saved with exit 0."""
    params = tiny_train_params()
    params["cnn"] = dict(params["cnn"], lr=1e38, epochs=3)
    epochs_seen = epoch_rates()  # a later callback (DVCLive's place): never told of the NaN epoch
    with pytest.raises(TrainingError) as caught:
        train_model("cnn", colour_data, settings("cnn", params), seed=0, callbacks=[epochs_seen])
    assert str(caught.value) == "cnn: loss became nan in epoch 1; lower train.cnn.lr (1e+38) in params.yaml"
    assert epochs_seen.rates == []


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


def _run_train_stage(tmp_path, train_params, val_labels=tuple(COLOURS)):
    """stages/train.py cnn run on what it reads: params.yaml, data/manifest.csv (val holding `val_labels`) and
    data/classes.json, with an earlier run's models/zoo/cnn/model.keras in place."""
    images = tmp_path / "images"
    images.mkdir()
    (tmp_path / "data").mkdir()
    rows = write_colour_images(images, per_class=4)
    pd.DataFrame(
        [{"path": p, "split": split, "label": label, "sha256": "", "width": 40, "height": 40, "augmented": False,
          "source": ""} for p, label in rows for split in ("train", "val") if split == "train" or label in val_labels]
    ).to_csv(tmp_path / "data" / "manifest.csv", index=False)
    classes = [{"label": label, "display": label.title()} for label in sorted(COLOURS)]
    (tmp_path / "data" / "classes.json").write_text(json.dumps({"classes": classes}))
    augment = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["augment"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"base": {"seed": 0}, "augment": augment,
                                                          "train": train_params}))
    earlier = tmp_path / "models" / "zoo" / "cnn" / "model.keras"  # an earlier run's, which must not survive
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"PK an earlier run's model")
    return subprocess.run([sys.executable, str(REPO_ROOT / "stages" / "train.py"), "cnn"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
                          capture_output=True, text=True, timeout=300)


def test_the_train_stage_fails_in_one_line_on_a_nan_loss_and_leaves_no_model(tmp_path):
    params = tiny_train_params()
    params["cnn"] = dict(params["cnn"], lr=1e38, epochs=3)
    result = _run_train_stage(tmp_path, params)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "train failed: cnn: loss became nan in epoch 1; lower train.cnn.lr (1e+38) in params.yaml")
    assert sorted(p.name for p in (tmp_path / "models" / "zoo" / "cnn").iterdir()) == ["live"]


def test_the_train_stage_refuses_a_val_split_short_of_a_class(tmp_path):
    result = _run_train_stage(tmp_path, tiny_train_params(), val_labels=("mid blue",))
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "train failed: data/manifest.csv: val/ has no usable photo of 2 of the 3 classes: 'alpha green', "
        "'zebra red'; validation chooses the model, its temperature and its thresholds, so every class needs "
        "photos there")
    assert list((tmp_path / "models" / "zoo" / "cnn").iterdir()) == []


def test_training_data_refuses_an_empty_val_split(tmp_path):
    columns = ["path", "split", "label", "sha256", "width", "height", "augmented", "source"]
    pd.DataFrame([["a.jpg", "train", "x", "1", 8, 8, False, ""], ["c.jpg", "test", "x", "3", 8, 8, False, ""]],
                 columns=columns).to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "classes.json").write_text(json.dumps({"classes": [{"label": "x"}]}))
    with pytest.raises(DatasetError) as refused:
        load_training_data(tmp_path / "manifest.csv", None, tmp_path / "classes.json")
    assert str(refused.value) == (
        f"{tmp_path / 'manifest.csv'}: val/ has no usable photo; validation chooses the model, its temperature and "
        "its thresholds, so every class needs photos there")


def test_saved_model_outputs_follow_classes_json(tmp_path):
    """Train through the manifest and classes.json; each colour must come out at its classes.json index."""
    images = tmp_path / "images"
    images.mkdir()
    rows = write_colour_images(images, per_class=8)
    pd.DataFrame(
        [{"path": p, "split": split, "label": label, "sha256": "", "width": 40, "height": 40,
          "augmented": False, "source": ""} for p, label in rows for split in ("train", "val")]
    ).to_csv(tmp_path / "manifest.csv", index=False)
    classes = [{"label": label, "display": label.title()} for label in sorted(COLOURS)]
    (tmp_path / "classes.json").write_text(json.dumps({"classes": classes}))
    data = load_training_data(tmp_path / "manifest.csv", None, tmp_path / "classes.json")
    model = train_model("cnn", data, settings("cnn"), seed=3)
    model.save(tmp_path / "model.keras")
    model = load_model(tmp_path / "model.keras")

    order = [entry["label"] for entry in json.loads((tmp_path / "classes.json").read_text())["classes"]]
    for label, colour in COLOURS.items():
        pixels = np.broadcast_to(np.array(colour, dtype="float32"), (1, 32, 32, 3))
        assert order[int(np.argmax(model(pixels)))] == label


@pytest.mark.slow
def test_training_steps_run_under_mirrored_strategy_on_two_cpus(tmp_path):
    """Logical devices must be set before TensorFlow starts, so this runs in a fresh interpreter."""
    images = tmp_path / "images"
    images.mkdir()
    write_colour_images(images, per_class=4)
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import numpy as np, pathlib
        from fish_classifier.training.trainer import TrainingData, train_custom_cnn, train_transfer
        import sys; sys.path.insert(0, "tests")
        from support.training_data import COLOURS, settings
        paths = sorted(str(p) for p in pathlib.Path({str(images)!r}).glob("*.png"))
        order = sorted(COLOURS)
        labels = np.array([order.index(next(l for l in COLOURS if p.split("/")[-1].startswith(l.replace(" ", "_"))))
                           for p in paths], dtype="int32")
        data = TrainingData([{{"label": l}} for l in order], paths, labels, paths, labels)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        options = {{"batch_size": 4, "class_weight": None, "callbacks": [], "verbose": 0}}
        cnn = train_custom_cnn(data, settings("cnn").model.model_copy(update={{"epochs": 2}}), strategy, options)
        net = train_transfer("mobilenetv2", data, settings("mobilenetv2").model, strategy, options, "auto")
        print("replicas", strategy.num_replicas_in_sync, cnn.output_shape, net.output_shape)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas 2 (None, 3) (None, 3)" in result.stdout
