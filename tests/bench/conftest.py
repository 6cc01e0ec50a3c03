"""What the benchmark tests share: a tiny colour deploy bundle, and a tiny
project folder (params.yaml, layout's MANIFEST and CLASSES) that the training benches read from."""

import json

import pandas as pd
import pytest
import yaml
from support import REPO_ROOT
from support.training_data import COLOURS, tiny_train_params, write_colour_images

from fish_classifier.layout import CLASSES, MANIFEST
from fish_classifier.params import PARAMS_FILE, load_params


@pytest.fixture(scope="session")
def colour_bundle(tmp_path_factory):
    """A deploy bundle (model.keras, model.tflite, unknown-photo detector) of a tiny colour CNN, trained in seconds."""
    from support.app_bundles import build_colour_bundle, colour_photo, jpeg_bytes

    from fish_classifier.serving.export import export_for_serving

    bundle = build_colour_bundle(tmp_path_factory.mktemp("bench") / "deploy")
    export_for_serving(bundle, [jpeg_bytes(colour_photo(i % 3, 64, seed=200 + i)) for i in range(6)])
    return bundle


@pytest.fixture
def tiny_project(tmp_path, monkeypatch):
    """The working directory a training bench runs in: colour photos in train, val and test, the repo's
    params.yaml with a `train` section that fits in seconds. Returns the folder, made the current directory."""
    rows = write_colour_images(tmp_path, per_class=4, size=32)
    (tmp_path / MANIFEST).parent.mkdir(parents=True)
    pd.DataFrame([{"path": path, "split": split, "label": label, "sha256": "", "width": 32, "height": 32,
                   "augmented": False, "source": ""} for path, label in rows for split in ("train", "val", "test")]
                 ).to_csv(tmp_path / MANIFEST, index=False)
    classes = [{"label": label, "display": label.title()} for label in sorted(COLOURS)]
    (tmp_path / CLASSES).write_text(json.dumps({"classes": classes}))
    params = load_params(REPO_ROOT / PARAMS_FILE)
    train = tiny_train_params(models=params["train"]["models"])
    train["cnn"] = dict(train["cnn"], epochs=2)
    (tmp_path / PARAMS_FILE).write_text(yaml.safe_dump({**params, "train": train}))
    monkeypatch.chdir(tmp_path)
    return tmp_path
