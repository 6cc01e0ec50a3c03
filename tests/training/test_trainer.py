"""training/trainer.py and stages/train.py: every model of the zoo trained end to end, and the stage's one-line failures."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from support import REPO_ROOT
from support.training_data import COLOURS, settings, tiny_train_params, write_colour_images

from fish_classifier.model.preprocessing import load_model
from fish_classifier.model.zoo import MODEL_NAMES
from fish_classifier.training.pixels import load_training_data
from fish_classifier.training.trainer import train_model


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
