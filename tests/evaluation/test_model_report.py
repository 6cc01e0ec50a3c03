"""evaluate_model on a backend that answers by colour: the one report object the evaluate stage writes."""

import numpy as np
import pandas as pd
import pytest
import yaml
from support import REPO_ROOT
from support.fixtures_models import CLASSES, TintBackend, write_tinted_images

from fish_classifier.evaluation.metrics import EvaluateSettings
from fish_classifier.evaluation.model_report import evaluate_model
from fish_classifier.images import load_pixels
from fish_classifier.params import check_params
from fish_classifier.serving.bundle_schema import apply_temperature


@pytest.fixture
def photos(tmp_path):
    rows = []
    for split, count in (("train", 1), ("val", 4), ("test", 3)):
        rows += [{"path": path, "split": split, "label": CLASSES[k]["label"], "augmented": False}
                 for path, k in write_tinted_images(tmp_path / split, count, seed=len(rows))]
    manifest = pd.DataFrame(rows)
    test = manifest[manifest["split"] == "test"]
    manifest.loc[test.index[-1], "label"] = CLASSES[0]["label"]  # a red photo filed as blue: one miss
    field = pd.DataFrame({"path": test["path"].iloc[:2], "label": [CLASSES[0]["label"], CLASSES[2]["label"]]})
    model = tmp_path / "model.keras"
    model.write_bytes(b"x" * 2_000_000)
    return manifest, field, model


def test_the_report_holds_every_figure_and_table_with_one_calibration(photos):
    manifest, field, model = photos
    settings = check_params(EvaluateSettings, yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["evaluate"])
    leaked = {manifest[manifest["split"] == "test"]["path"].iloc[0]}

    report = evaluate_model(TintBackend(), model, manifest, CLASSES, leaked_test_paths=leaked, field=field,
                            settings=settings, other_fish_labels=[CLASSES[0]["label"]], name="tint")

    m = report.metrics
    assert (m["test_images"], m["accuracy"]) == (9, pytest.approx(8 / 9))
    assert (m["test_clean"]["images"], m["test_clean"]["left_out"]) == (8, 1)
    assert m["val"] == {**m["val"], "accuracy": 1.0, "images": 12}
    assert m["input_size"] == 16 and m["model_size_mb"] == 2.0 and m["images_per_second"] > 0
    # The field: a blue photo named blue, a blue photo filed as red (missed).
    assert (m["field"]["images"], m["field"]["accuracy"]) == (2, 0.5)
    # The calibrated probabilities are computed once, and every table shows them.
    temperature = m["calibration"]["temperature"]
    raw = TintBackend()(np.stack([load_pixels(path, 16) for path in report.test.paths]))
    assert np.allclose(report.test.probabilities, apply_temperature(raw, temperature), atol=1e-6)
    predictions = report.predictions(report.test)
    assert predictions["confidence"].tolist() == pytest.approx(report.test.probabilities.max(axis=1), abs=1e-6)
    assert (predictions["label"] != predictions["predicted"]).sum() == 1
    assert len(report.val_confidence) == 12 and report.val_confidence["confidence"].between(0, 1).all()
    assert report.per_class["support"].tolist() == [4, 3, 2]
    assert list(report.reliability_curves) == ["before (T=1)", f"after (T={temperature:.2f})"]
    assert report.reliability_after["count"].sum() == 9
    assert report.confusion_pairs.columns.tolist() == ["actual", "predicted"] and len(report.confusion_pairs) == 9
    assert report.line("tint").startswith("tint: validation macro F1 1.0000; test accuracy 0.8889")
    assert "field accuracy 50.0% of 2 photos" in report.line("tint")
