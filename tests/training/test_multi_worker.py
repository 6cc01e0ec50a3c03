"""train.strategy multi_worker: two real worker processes on 127.0.0.1 running the train stage."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from support import REPO_ROOT as REPO
from support.training_data import COLOURS, tiny_train_params, write_colour_images

from fish_classifier.layout import MODEL_FILE, model_dir
from fish_classifier.model.preprocessing import load_model
from fish_classifier.training.multi_worker import is_chief, tf_config
from fish_classifier.training.fit import choose_strategy

pytestmark = pytest.mark.slow  # each test starts two TensorFlow processes that train together


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def stage_folder(tmp_path, strategy_params):
    """A folder holding what stages/train.py reads: params.yaml, data/manifest.csv and data/classes.json."""
    images = tmp_path / "images"
    images.mkdir()
    rows = write_colour_images(images, per_class=9)
    (tmp_path / "data").mkdir()
    pd.DataFrame(
        [{"path": p, "split": split, "label": label, "sha256": "", "width": 40, "height": 40,
          "augmented": False, "source": ""} for p, label in rows for split in ("train", "val")]
    ).to_csv(tmp_path / "data" / "manifest.csv", index=False)
    classes = [{"label": label, "display": label.title()} for label in sorted(COLOURS)]
    (tmp_path / "data" / "classes.json").write_text(json.dumps({"classes": classes}))
    augment = yaml.safe_load((REPO / "params.yaml").read_text())["augment"]  # the stage reads its ranges
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"base": {"seed": 7}, "augment": augment, "train": strategy_params}))
    return tmp_path


def run_two_workers(folder, model):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen([sys.executable, str(REPO / "stages" / "train.py"), model], cwd=folder,
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, out in zip(workers, outputs):
        assert worker.returncode == 0, out[-4000:]
    return outputs


def saved_path(output):
    return Path(re.search(r"^saved (\S+model\.keras)", output, re.M).group(1))


@pytest.mark.parametrize("model", ["cnn", "mobilenetv2"])
def test_two_workers_end_with_identical_weights_and_only_the_chief_writes_the_model(tmp_path, model):
    params = tiny_train_params(strategy="multi_worker", class_weight=True)
    params["cnn"].update(epochs=3, patience=3, augment=True)
    params["mobilenetv2"].update(head_epochs=3, fine_tune_epochs=2, mirror_train=True)
    folder = stage_folder(tmp_path, params)

    chief_out, worker_out = run_two_workers(folder, model)

    chief_model, worker_model = saved_path(chief_out), saved_path(worker_out)
    assert chief_model == model_dir(model) / MODEL_FILE
    assert (folder / chief_model).is_file() and (folder / model_dir(model) / "live").is_dir()
    assert "a worker's copy, the chief writes" in worker_out and worker_model.is_absolute()
    # Both workers took every step together: two replicas, and the same number of epochs logged.
    assert chief_out.count("Epoch 1/") == worker_out.count("Epoch 1/") >= 1
    chief_weights = load_model(folder / chief_model).get_weights()
    worker_weights = load_model(worker_model).get_weights()
    assert len(chief_weights) == len(worker_weights)
    for a, b in zip(chief_weights, worker_weights):
        np.testing.assert_array_equal(a, b)
    if model != "cnn":
        # The cached-feature path stays on: each worker runs the frozen layers over its own half of the 27 images.
        assert "computing backbone activations for 14 train images" in chief_out
        assert "computing backbone activations for 13 train images" in worker_out
    # ...and the loss went down (the loop did train).
    losses = [float(x) for x in re.findall(r"- loss: ([0-9.]+)", chief_out)]
    assert losses and losses[-1] < losses[0]


def test_multi_worker_without_tf_config_says_what_is_missing(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="strategy 'multi_worker' needs TF_CONFIG"):
        choose_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ValueError, match="TF_CONFIG is not a cluster description"):
        tf_config()


@pytest.mark.parametrize(("config", "chief"), [
    (None, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}, True),
    ({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}, False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}, False),
    ({"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}, True),
])
def test_the_chief_is_the_chief_task_else_worker_zero(monkeypatch, config, chief):
    if config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert is_chief() is chief
