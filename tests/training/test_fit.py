"""training/fit.py: the strategy, class weights, learning rates, the loss and the fit loop."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from support import REPO_ROOT
from support.training_data import write_colour_images

from fish_classifier.training.fit import choose_strategy, class_weights, learning_rate, training_loss


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


def test_an_unknown_learning_rate_schedule_is_named():
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear', expected one of: constant, cosine"):
        learning_rate(1e-3, "linear", steps=10)


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
        from fish_classifier.training.from_scratch import train_custom_cnn
        from fish_classifier.training.pixels import TrainingData
        from fish_classifier.training.transfer import train_transfer
        import sys; sys.path.insert(0, "tests")
        from support.training_data import COLOURS, settings
        paths = sorted(str(p) for p in pathlib.Path({str(images)!r}).glob("*.png"))
        order = sorted(COLOURS)
        labels = np.array([order.index(next(l for l in COLOURS if p.split("/")[-1].startswith(l.replace(" ", "_"))))
                           for p in paths], dtype="int32")
        data = TrainingData([{{"label": l}} for l in order], paths, labels, paths, labels)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        options = {{"batch_size": 4, "class_weight": None, "callbacks": [], "verbose": 0}}
        cnn = train_custom_cnn("cnn", data, settings("cnn").model.model_copy(update={{"epochs": 2}}), strategy, options)
        net = train_transfer("mobilenetv2", data, settings("mobilenetv2").model, strategy, options, "auto")
        print("replicas", strategy.num_replicas_in_sync, cnn.output_shape, net.output_shape)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "replicas 2 (None, 3) (None, 3)" in result.stdout
