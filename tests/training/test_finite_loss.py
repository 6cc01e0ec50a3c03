"""training/finite_loss.py: a nan or infinite loss stops the fit with a TrainingError naming the fit, the epoch and the knob."""

import numpy as np
import pytest

from fish_classifier.training.finite_loss import FiniteLoss, TrainingError


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
