"""The evaluate stage end to end on a tiny model: every output dvc.yaml declares, with known values."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image
from support import REPO_ROOT as REPO
from support.fixtures_models import CLASSES, save_tiny_model, write_tinted_images

from fish_classifier.evaluation.calibration import TEMPERATURE_BOUNDS
from fish_classifier.layout import METRICS_FILE, MODEL_FILE, PER_CLASS_FILE, VAL_CONFIDENCE_FILE, metrics_dir, model_dir
from fish_classifier.serving.prediction_row import COLUMNS


def _declared_evaluate_outputs(model: str) -> set[str]:
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["evaluate"]["do"]
    paths = set()
    for section in ("outs", "metrics", "plots"):
        for entry in stage.get(section, []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            paths.add(path.replace("${item}", model))
    return paths


@pytest.mark.slow
def test_evaluate_stage_writes_every_declared_output(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["other_fish_labels"] = [CLASSES[0]["label"]]  # blue: "any other fish" in the field figures
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    save_tiny_model(tmp_path / model_dir("tiny") / MODEL_FILE)
    data = tmp_path / "data"
    data.mkdir()
    (data / "classes.json").write_text(json.dumps({"classes": CLASSES}))
    rows = []
    for split, count in (("train", 2), ("val", 5), ("test", 4)):
        for path, index in write_tinted_images(data / "prepared" / split, count, seed=len(rows)):
            rows.append({"path": Path(path).relative_to(tmp_path).as_posix(), "split": split,
                         "label": CLASSES[index]["label"], "augmented": False})
    # One test image of the last class filed under the first: the model will "miss" it.
    test_rows = [r for r in rows if r["split"] == "test"]
    test_rows[-1]["label"] = CLASSES[0]["label"]
    # Augmented copies must never be scored.
    rows.append({**test_rows[0], "split": "test", "augmented": True})
    manifest = pd.DataFrame(rows).assign(sha256="x", width=48, height=48, source="")
    manifest.to_csv(data / "manifest.csv", index=False)
    # prepare's report: the first test photo has a near duplicate in train, so the clean subset leaves it out.
    train_path = next(r["path"] for r in rows if r["split"] == "train")
    (data / "prepare_report.json").write_text(json.dumps({
        "exact_duplicate_pairs": {"train-test": []},
        "near_duplicate_pairs": {"train-test": [{"train": train_path, "test": test_rows[0]["path"], "distance": 2}]},
    }))

    # The field set: two green photos (one filed as red, so missed) and one blue (the "other fish" class).
    field = [(path, index) for path, index in write_tinted_images(data / "field" / "photos", 1, seed=99)]
    field_rows = [{"path": Path(path).relative_to(tmp_path).as_posix(), "label": CLASSES[index]["label"]}
                  for path, index in field]
    field_rows.append({**field_rows[1], "label": CLASSES[2]["label"]})
    pd.DataFrame(field_rows).to_csv(data / "field" / "manifest.csv", index=False)

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run([sys.executable, str(REPO / "stages" / "evaluate.py"), "tiny"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    for path in _declared_evaluate_outputs("tiny"):
        assert (tmp_path / path).is_file(), f"{path} is declared in dvc.yaml but was not written"
    report = json.loads((tmp_path / metrics_dir("tiny") / METRICS_FILE).read_text())
    assert report["test_images"] == 12
    assert report["accuracy"] == pytest.approx(11 / 12)
    # The clean subset: the 11 test photos without a train twin, the missed one among them.
    assert (report["test_clean"]["images"], report["test_clean"]["left_out"]) == (11, 1)
    assert report["test_clean"]["accuracy"] == pytest.approx(10 / 11)
    assert report["val"]["accuracy"] == 1.0 and report["val"]["images"] == 15
    # Each class's scores sit in per_class.csv, not in metrics.json (whose every number is a `dvc exp show` column).
    assert "per_class" not in report
    per_class = pd.read_csv(tmp_path / metrics_dir("tiny") / PER_CLASS_FILE).set_index("label")
    assert per_class.index.tolist() == [c["label"] for c in CLASSES]
    assert per_class["display"].tolist() == [c["display"] for c in CLASSES]
    assert per_class.loc[CLASSES[0]["label"], "support"] == 5
    assert per_class.loc[CLASSES[0]["label"], "recall"] == pytest.approx(4 / 5)
    assert per_class.loc[CLASSES[-1]["label"], "precision"] == pytest.approx(3 / 4)
    assert report["input_size"] == 32
    # Field: 3 of 4 right; the species (all but blue) 2 of 3; red 1 of 2 (the green photo filed as red is missed).
    assert report["field"]["images"] == 4 and report["field"]["accuracy"] == pytest.approx(3 / 4)
    assert (report["field"]["species_images"], report["field"]["species_accuracy"]) == (3, pytest.approx(2 / 3))
    assert report["field"]["per_class"][CLASSES[2]["label"]] == {"images": 2, "accuracy": 0.5}
    assert report["field"]["per_class"][CLASSES[0]["label"]] == {"images": 1, "accuracy": 1.0}
    field_predictions = pd.read_csv(tmp_path / metrics_dir("tiny") / "field_predictions.csv")
    assert field_predictions["path"].tolist() == [r["path"] for r in field_rows]
    with Image.open(tmp_path / metrics_dir("tiny") / "field_mistakes.png") as gallery:
        assert gallery.text["Title"].startswith("tiny: field photos (taken outside the studio): 1 of 4 photos")
    assert report["images_per_second"] > 0 and report["model_size_mb"] > 0
    # The tiny model names every validation tint right: the likelihood alone would sharpen without end;
    # params' prior on log T stops it inside the bounds (tests/evaluation/test_calibration.py checks that minimum).
    assert report["calibration"]["val_errors"] == 0
    assert TEMPERATURE_BOUNDS[0] * 1.01 < report["calibration"]["temperature"] < 1.0

    predictions = pd.read_csv(tmp_path / metrics_dir("tiny") / "predictions.csv")
    # The true label beside the app's and the CLI's columns (serving/prediction_row.py).
    assert len(predictions) == 12 and predictions.columns.tolist() == ["path", "label", *COLUMNS[1:]]
    assert (predictions["label"] != predictions["predicted"]).sum() == 1
    confusion_rows = pd.read_csv(tmp_path / metrics_dir("tiny") / "confusion.csv")
    assert confusion_rows.columns.tolist() == ["actual", "predicted"]
    assert set(confusion_rows["actual"]) == {c["display"] for c in CLASSES}
    assert len(pd.read_csv(tmp_path / metrics_dir("tiny") / VAL_CONFIDENCE_FILE)) == 15
    for png in ("confusion.png", "reliability.png", "misclassified.png", "field_mistakes.png"):
        assert (tmp_path / metrics_dir("tiny") / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The one miss: a red photo filed under the first (blue) class, taken for the red class.
    with Image.open(tmp_path / metrics_dir("tiny") / "misclassified.png") as gallery:
        assert gallery.size == (650, 360)  # one captioned photo on a sheet of the narrowest width
        assert gallery.text["Title"].startswith("tiny: test split: 1 of 12 photos misclassified")
        assert gallery.text["Description"].startswith(
            f"true: {CLASSES[0]['display']}\npredicted: {CLASSES[-1]['display']}\nconfidence ")
