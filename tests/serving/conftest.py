"""The serving tests' one exported bundle, built once for the export, inference and predictor tests."""

import shutil
from pathlib import Path

import pytest
from support.fixtures_models import make_bundle, probe_images

from fish_classifier.serving.export import export_for_serving


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """A tiny bundle with both models, and the parity report of its export."""
    folder = make_bundle(tmp_path_factory.mktemp("serving") / "deploy", temperature=2.0, threshold=0.5)
    return Path(folder), export_for_serving(folder, probe_images())


@pytest.fixture(scope="session")
def litert_only(exported, tmp_path_factory):
    """The same bundle as the Docker image carries it: model.tflite, labels.json, bundle.json."""
    folder = tmp_path_factory.mktemp("image") / "deploy"
    shutil.copytree(exported[0], folder)
    (folder / "model.keras").unlink()
    return folder
