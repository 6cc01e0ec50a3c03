import pytest
from support.fixtures_models import CLASSES, save_tiny_model

from fish_classifier.serving.bundle import BundleError
from fish_classifier.serving.bundle_writer import training_data_hash, write_bundle


def test_write_bundle_checks_the_model_against_the_classes(tmp_path):
    model_path = save_tiny_model(tmp_path / "model.keras")
    with pytest.raises(BundleError, match="has 3 outputs but there are 2 classes"):
        write_bundle(tmp_path / "deploy", model_path=model_path, classes=CLASSES[:2], model_name="tiny",
                     temperature=1.0, threshold=0.5, top_k=5, metrics={}, data_hash="x")
    with pytest.raises(ValueError, match="threshold must be within"):
        write_bundle(tmp_path / "deploy", model_path=model_path, classes=CLASSES, model_name="tiny",
                     temperature=1.0, threshold=1.5, top_k=5, metrics={}, data_hash="x")


def test_write_bundle_never_deletes_a_folder_that_is_not_a_bundle(tmp_path):
    model_path = save_tiny_model(tmp_path / "src" / "model.keras")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(BundleError, match="refusing to overwrite"):
        write_bundle(precious, model_path=model_path, classes=CLASSES, model_name="tiny",
                     temperature=1.0, threshold=0.5, top_k=5, metrics={}, data_hash="x")
    assert (precious / "notes.txt").read_text() == "keep me"


def test_training_data_hash_follows_the_manifest_contents(tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,split\na.jpg,train\n")
    first = training_data_hash([manifest, tmp_path / "absent.csv"])
    assert first == training_data_hash([manifest, tmp_path / "absent.csv"])
    manifest.write_text("path,split\nb.jpg,train\n")
    assert training_data_hash([manifest, tmp_path / "absent.csv"]) != first
