"""training/from_scratch.py: the custom CNN fitted from scratch, its on-the-fly augmentation and its learning rate."""

import numpy as np
import pytest
from support.training_data import AUGMENTATION, epoch_rates, settings, tiny_train_params

from fish_classifier.data.augment import Augmentation
from fish_classifier.training import from_scratch
from fish_classifier.training.from_scratch import cnn_augmenter
from fish_classifier.training.finite_loss import TrainingError
from fish_classifier.training.trainer import train_model


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
    monkeypatch.setattr(from_scratch, "cnn_augmenter", lambda ranges: built.append(ranges) or cnn_augmenter(ranges))
    model = train_model("cnn", colour_data, read, seed=0)  # the augment stage's ranges play no part
    assert built == [AUGMENTATION] and model.output_shape == (None, 3)


def test_the_cnn_learning_rate_decays_along_a_cosine_over_all_its_epochs(colour_data):
    rates = epoch_rates()
    params = tiny_train_params()
    params["cnn"] = dict(params["cnn"], epochs=4, patience=4, lr=0.02, lr_schedule="cosine", convs_per_block=2)
    model = train_model("cnn", colour_data, settings("cnn", params), seed=0, callbacks=[rates])
    # cos(pi * k / 4) after each epoch k of 4: half-way after the second, zero at the end.
    expected = [0.01 * (1 + np.cos(np.pi * k / 4)) for k in (1, 2, 3, 4)]
    np.testing.assert_allclose(rates.rates, expected, rtol=1e-5, atol=1e-10)
    assert model.get_layer("block3_conv2").filters == 16


def test_a_cnn_whose_loss_goes_nan_raises_instead_of_returning_a_model(colour_data):
    """`train.cnn.lr: .inf` (refused now by params) trained a model of NaNs that the stage saved with exit 0."""
    params = tiny_train_params()
    params["cnn"] = dict(params["cnn"], lr=1e38, epochs=3)
    epochs_seen = epoch_rates()  # a later callback (DVCLive's place): never told of the NaN epoch
    with pytest.raises(TrainingError) as caught:
        train_model("cnn", colour_data, settings("cnn", params), seed=0, callbacks=[epochs_seen])
    assert str(caught.value) == "cnn: loss became nan in epoch 1; lower train.cnn.lr (1e+38) in params.yaml"
    assert epochs_seen.rates == []
