"""The export for serving: model.tflite made from model.keras, checked against it on probe photos before the
bundle records it, and refused whole when the two disagree."""

import json
from pathlib import Path

import numpy as np
import pytest
from support.fixtures_models import make_bundle, probe_images, trained_tiny_model

from fish_classifier.serving.bundle import file_sha256, read_bundle
from fish_classifier.serving.export import (
    PARITY_TOLERANCE,
    ParityError,
    compare_backends,
    evenly_spaced,
    export_for_serving,
    export_litert,
)
from fish_classifier.serving.inference import CLASS_MAPS, EMBEDDING, PROBABILITIES, KerasBackend, LiteRTBackend
from fish_classifier.serving.predictor import Predictor


def test_export_matches_the_keras_model_and_is_recorded_in_the_bundle(exported):
    folder, report = exported
    assert report["images"] == 12 and report["labels_agree"] == 12 and report["disagreements"] == []
    assert report["max_abs_diff"] <= PARITY_TOLERANCE
    serving = json.loads((folder / "bundle.json").read_text())["serving"]
    assert serving["file"] == "model.tflite" and serving["runtime"] == "LiteRT"
    assert serving["outputs"] == [PROBABILITIES, CLASS_MAPS, EMBEDDING]
    assert json.loads((folder / "bundle.json").read_text())["files"]["model.tflite"] == file_sha256(folder / "model.tflite")
    assert serving["parity"] == {"images": 12, "max_abs_diff": report["max_abs_diff"],
                                 "embedding_max_abs_diff": report["embedding_max_abs_diff"], "labels_agree": 12}
    assert report["embedding_max_abs_diff"] <= PARITY_TOLERANCE
    assert read_bundle(folder).serving_model_path == folder / "model.tflite"


def test_a_failed_parity_check_leaves_no_serving_model(tmp_path):
    folder = Path(make_bundle(tmp_path / "deploy"))
    with pytest.raises(ParityError, match=r"differs from the Keras model on 3 images: largest probability difference"):
        export_for_serving(folder, probe_images(3), tolerance=-1.0)  # no export can pass a negative tolerance
    assert not (folder / "model.tflite").exists()
    assert "serving" not in json.loads((folder / "bundle.json").read_text())
    assert Predictor(folder).backend == "keras"


def test_export_litert_writes_the_file_atomically(tmp_path):
    path = export_litert(trained_tiny_model(), tmp_path / "model.tflite")
    assert path.stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


class FixedBackend:
    input_size = 8

    def __init__(self, rows):
        self.rows = np.asarray(rows, dtype=np.float32)

    def __call__(self, pixels):
        return self.rows[: len(pixels)]

    def outputs(self, pixels):
        return {PROBABILITIES: self(pixels), EMBEDDING: 10 * self(pixels)}


def test_compare_backends_reports_the_largest_difference_and_the_images_that_disagree():
    reference = FixedBackend([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    candidate = FixedBackend([[0.9, 0.1], [0.45, 0.55], [0.2, 0.8]])
    report = compare_backends(reference, candidate, probe_images(3))
    assert report == {"images": 3, "max_abs_diff": pytest.approx(0.15), "embedding_max_abs_diff": pytest.approx(1.5),
                      "labels_agree": 2, "disagreements": [1]}
    with pytest.raises(ValueError, match="no images"):
        compare_backends(reference, candidate, [])


def test_evenly_spaced_reaches_from_the_first_item_to_the_last():
    assert evenly_spaced(range(10), 4) == [0, 3, 6, 9]
    assert evenly_spaced(["a", "b"], 5) == ["a", "b"]
    with pytest.raises(ValueError, match="count must be at least 1, got 0"):
        evenly_spaced(range(3), 0)


@pytest.mark.slow
def test_parity_on_real_dev_test_photos(tmp_path):
    from support.app_bundles import DEV_ZIP, MOBILENET_WEIGHTS, build_real_photo_bundle, real_photos

    if not DEV_ZIP.is_file() or not MOBILENET_WEIGHTS.is_file():
        pytest.skip(f"real-photo parity needs ../shared ({DEV_ZIP} and {MOBILENET_WEIGHTS.name}); not present")
    labels = ["fish sea_food red_mullet", "fish sea_food shrimp", "fish sea_food trout"]
    bundle = build_real_photo_bundle(tmp_path / "deploy", labels)
    photos = [data for _, data in real_photos(labels, "test", 15)]

    report = export_for_serving(bundle, photos)

    assert report["images"] == 45 and report["labels_agree"] == 45
    assert report["max_abs_diff"] <= PARITY_TOLERANCE


@pytest.mark.slow
def test_a_mirror_averaging_model_exports_with_its_maps_folded_back_to_one_per_photo(tmp_path):
    import keras

    from fish_classifier.model.preprocessing import load_model
    from fish_classifier.model.zoo import build_backbone, build_head, build_model

    backbone, head = build_backbone("mobilenetv2", None, image_size=64), build_head(3, 0.1)
    build_model("mobilenetv2", 3, backbone=backbone, head=head).save(tmp_path / "plain.keras")
    build_model("mobilenetv2", 3, backbone=backbone, head=head, mirror_average=True).save(tmp_path / "mirrored.keras")
    keras.backend.clear_session()
    plain = KerasBackend(load_model(tmp_path / "plain.keras"))
    litert = LiteRTBackend(export_litert(load_model(tmp_path / "mirrored.keras"), tmp_path / "m.tflite"), num_threads=1)

    pixels = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    maps, probs = litert.class_maps_and_probs(pixels)
    plain_maps, plain_probs = plain.class_maps_and_probs(pixels)
    mirror_maps, mirror_probs = plain.class_maps_and_probs(pixels[:, :, ::-1])
    assert maps.shape == plain_maps.shape == (2, 2, 2, 3)
    np.testing.assert_allclose(probs, (plain_probs + mirror_probs) / 2, atol=PARITY_TOLERANCE)
    # The mirror's maps, flipped back, line up with the photo's own before they are averaged.
    np.testing.assert_allclose(maps, (plain_maps + mirror_maps[:, :, ::-1]) / 2, rtol=1e-4, atol=1e-4)
