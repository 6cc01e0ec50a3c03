"""A fit that goes wrong in a way no model should be saved from: `TrainingError`, and `FiniteLoss`, the callback
that raises it as soon as an epoch's training or validation loss is nan or infinite (a model of NaNs would
otherwise be saved, evaluated and compared like any other)."""

import math

import keras


class TrainingError(RuntimeError):
    """A fit that went wrong in a way no model should be saved from; the one-line message names the model, the
    epoch and the knob to change."""


class FiniteLoss(keras.callbacks.Callback):
    """Raises TrainingError at the end of the first epoch whose loss or validation loss is nan or infinite.

    `keras.callbacks.TerminateOnNaN` only stops the fit, and the stage then saved the NaN model with exit status 0.
    `fit` names what is being fitted (`cnn`, `vgg16 head`), `lr_key` the params.yaml key of its learning rate.
    """

    def __init__(self, fit: str, lr_key: str, lr: float):
        super().__init__()
        self.fit, self.lr_key, self.lr = fit, lr_key, lr

    def on_epoch_end(self, epoch, logs=None):
        for key, what in (("loss", "loss"), ("val_loss", "validation loss")):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                raise TrainingError(
                    f"{self.fit}: {what} became {float(value)} in epoch {epoch + 1}; lower {self.lr_key} "
                    f"({self.lr:g}) in params.yaml"
                )
