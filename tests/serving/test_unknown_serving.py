"""A relative (outlier-pool) detector in a deploy bundle serves as the select stage fitted it: saved, hashed,
loaded by the Predictor, and scored on the LiteRT model's embeddings as on the Keras model's."""

import json
from pathlib import Path

import numpy as np
import pytest
from support.app_bundles import text_photo
from support.fixtures_models import CLASSES, IMAGE_SIZE, make_bundle, tinted_image

from fish_classifier.evaluation.unknown_fit import UnknownSettings, fit_unknown_detector
from fish_classifier.images import load_pixels
from fish_classifier.model.preprocessing import load_model
from fish_classifier.serving.bundle_writer import add_unknown_detector
from fish_classifier.serving.export import export_for_serving
from fish_classifier.serving.inference import EMBEDDING, KerasBackend, LiteRTBackend
from fish_classifier.serving.predictor import Predictor
from fish_classifier.serving.unknown import RELATIVE


def _pixels(images) -> np.ndarray:
    return np.stack([load_pixels(image, IMAGE_SIZE) for image in images]).astype(np.float32)


@pytest.fixture(scope="module")
def relative_bundle(tmp_path_factory):
    folder = Path(make_bundle(tmp_path_factory.mktemp("relative") / "deploy", detector=False))
    export_for_serving(folder, [tinted_image(c["label"], seed=40 + i) for i, c in enumerate(CLASSES)])
    keras = KerasBackend(load_model(folder / "model.keras"))
    labels = np.repeat(np.arange(len(CLASSES)), 30)
    fish = {split: _pixels([tinted_image(CLASSES[k]["label"], seed=seed + i) for i, k in enumerate(labels)])
            for split, seed in (("train", 7000), ("val", 8000))}
    pool = _pixels([text_photo(f"pool photo {i}") for i in range(12)])
    embed = lambda pixels: keras.outputs(pixels)[EMBEDDING]  # noqa: E731
    detector = fit_unknown_detector(UnknownSettings("mahalanobis", 0.5, 1, 0.0, outliers="relative"),
                                    embed(fish["train"]), labels, embed(fish["val"]), outlier_embeddings=embed(pool))
    add_unknown_detector(folder, detector, outliers="relative", outlier_photos=len(pool))
    return folder, detector, keras


def test_the_litert_predictor_gives_the_relative_score_of_the_keras_embeddings(relative_bundle):
    folder, detector, keras = relative_bundle
    photos = [tinted_image(CLASSES[k]["label"], seed=9000 + k) for k in range(len(CLASSES))]
    photos += [text_photo("a photo of no fish"), text_photo("menu: soup, bread")]

    predictor = Predictor(folder, backend="litert")
    results = predictor.predict(photos)

    assert isinstance(predictor._backend, LiteRTBackend)
    assert predictor.detector.method == RELATIVE
    assert json.loads((folder / "bundle.json").read_text())["unknown"]["outliers"] == "relative"
    expected = detector.score(keras.outputs(_pixels(photos))[EMBEDDING])
    assert np.allclose([r.unknown_score for r in results], expected, rtol=1e-3, atol=1e-3)
    assert [r.is_unknown for r in results] == [False] * len(CLASSES) + [True, True]
