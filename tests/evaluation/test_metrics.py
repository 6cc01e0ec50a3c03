import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from support import REPO_ROOT as REPO
from support.fixtures_models import CLASSES, save_tiny_model, write_tinted_images

from fish_classifier.evaluation.calibration import TEMPERATURE_BOUNDS
from fish_classifier.evaluation.metrics import (
    PER_CLASS_COLUMNS,
    calibration_report,
    confusion,
    expected_calibration_error,
    headline,
    most_confident_mistakes,
    per_class_table,
    plot_misclassified,
    predictions_table,
    reliability_table,
)
from fish_classifier.evaluation.predictions import predict_split
from fish_classifier.layout import (
    METRICS_FILE,
    MODEL_FILE,
    PER_CLASS_FILE,
    VAL_CONFIDENCE_FILE,
    metrics_dir,
    model_dir,
)

# Rows = actual class, columns = predicted class.
HAND_MADE = np.array(
    [
        [3, 1, 0],  # class a: 4 images, 3 right
        [1, 2, 1],  # class b: 4 images, 2 right
        [0, 0, 2],  # class c: 2 images, both right
    ]
)


def _pairs(matrix):
    y_true, y_pred = [], []
    for (actual, predicted), count in np.ndenumerate(matrix):
        y_true += [actual] * count
        y_pred += [predicted] * count
    return np.array(y_true), np.array(y_pred)


ABC = [{"label": label, "display": label.upper()} for label in "abc"]


def test_scores_match_hand_computed_values_on_a_known_confusion_matrix():
    y_true, y_pred = _pairs(HAND_MADE)
    report = headline(y_true, y_pred, 3)
    table = per_class_table(y_true, y_pred, ABC)

    assert report["accuracy"] == pytest.approx(0.7)  # 7 on the diagonal of 10
    assert table.columns.tolist() == PER_CLASS_COLUMNS  # the scores rounded to 4 places, hence abs=5e-5 below
    assert table["label"].tolist() == ["a", "b", "c"] and table["display"].tolist() == ["A", "B", "C"]
    # precision = diagonal / column sum: a 3/4, b 2/3, c 2/3
    assert table["precision"].tolist() == pytest.approx([3 / 4, 2 / 3, 2 / 3], abs=5e-5)
    # recall = diagonal / row sum: a 3/4, b 2/4, c 2/2
    assert table["recall"].tolist() == pytest.approx([3 / 4, 1 / 2, 1.0], abs=5e-5)
    # f1 = 2pr / (p + r): a 3/4, b (2/3)/(7/6) = 4/7, c (4/3)/(5/3) = 4/5
    assert table["f1"].tolist() == pytest.approx([3 / 4, 4 / 7, 4 / 5], abs=5e-5)
    assert table["support"].tolist() == [4, 4, 2]
    # macro = plain mean over classes: P (3/4 + 2/3 + 2/3)/3 = 25/36, R (3/4 + 1/2 + 1)/3 = 3/4,
    # F1 (3/4 + 4/7 + 4/5)/3 = (105 + 80 + 112)/140/3 = 99/140
    assert report["macro_precision"] == pytest.approx(25 / 36)
    assert report["macro_recall"] == pytest.approx(3 / 4)
    assert report["macro_f1"] == pytest.approx(99 / 140)
    np.testing.assert_array_equal(confusion(y_true, y_pred, 3), HAND_MADE)


def test_a_class_never_predicted_scores_zero_precision_not_nan():
    # Everything predicted as class 0: class 0 P = 2/4, R = 1, F1 = 2/3; class 1 P = R = F1 = 0.
    report = headline([0, 0, 1, 1], [0, 0, 0, 0], 2)
    table = per_class_table([0, 0, 1, 1], [0, 0, 0, 0], [{"label": k, "display": k.upper()} for k in "xy"])
    assert table.iloc[1].to_dict() == {"label": "y", "display": "Y", "precision": 0.0, "recall": 0.0, "f1": 0.0,
                                       "support": 2}
    assert report["macro_precision"] == pytest.approx(0.25)
    assert report["macro_f1"] == pytest.approx(1 / 3)


def test_expected_calibration_error_matches_hand_computed_value():
    confidences = [0.95, 0.95, 0.65, 0.65, 0.65, 0.65]
    correct = [1, 0, 1, 1, 1, 0]
    # With 15 bins: 0.95 falls in (14/15, 1], accuracy 1/2, gap 0.45, weight 2/6;
    # 0.65 falls in (9/15, 10/15], accuracy 3/4, gap 0.10, weight 4/6.
    # ECE = 0.45 * 1/3 + 0.10 * 2/3 = 13/60.
    assert expected_calibration_error(confidences, correct, bins=15) == pytest.approx(13 / 60)

    table = reliability_table(confidences, correct, bins=15)
    assert table["bin"].tolist() == [9, 14]
    assert table["count"].tolist() == [4, 2]
    assert table["accuracy"].tolist() == pytest.approx([0.75, 0.5])
    assert table["confidence"].tolist() == pytest.approx([0.65, 0.95])


def test_a_confidence_of_exactly_one_lands_in_the_top_bin():
    table = reliability_table([1.0, 1.0], [1, 1], bins=15)
    assert table["bin"].tolist() == [14]
    assert expected_calibration_error([1.0, 1.0], [1, 1], bins=15) == 0.0


def test_predictions_table_lists_top_k_labels_most_likely_first():
    probabilities = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    table = predictions_table(["a.jpg", "b.jpg"], [1, 2], probabilities, ["x", "y", "z"], top_k=2)
    assert table.columns.tolist() == ["path", "label", "predicted", "confidence", "top_2"]
    assert table["label"].tolist() == ["y", "z"]
    assert table["predicted"].tolist() == ["y", "x"]
    assert table["confidence"].tolist() == [0.7, 0.5]
    assert table["top_2"].tolist() == ["y:0.7000; z:0.2000", "x:0.5000; z:0.3000"]


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
    assert len(predictions) == 12 and predictions.columns.tolist()[:4] == ["path", "label", "predicted", "confidence"]
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


def test_calibration_report_fits_on_validation_and_scores_test():
    # Validation: one confident error in four, so the fitted temperature softens (T > 1).
    val = np.array([[0.95, 0.05], [0.05, 0.95], [0.95, 0.05], [0.9, 0.1]])
    test = np.array([[0.97, 0.03], [0.15, 0.85], [0.96, 0.04], [0.25, 0.75]])
    report = calibration_report(val, [0, 1, 0, 1], test, [0, 1, 1, 1], bins=10, prior_sigma=1.0)
    assert report["val_errors"] == 1
    assert report["temperature"] > 1
    assert report["nll_after"] < report["nll_before"]
    # By hand, at T = 1: bin [0.9, 1] holds 0.97 (right) and 0.96 (wrong): |0.5 - 0.965| * 2/4 = 0.2325;
    # bin [0.8, 0.9) holds 0.85 (right): 0.15 * 1/4; bin [0.7, 0.8) holds 0.75 (right): 0.25 * 1/4.
    assert report["ece_before"] == pytest.approx(0.2325 + 0.0375 + 0.0625)


class TintBackend:
    """Answers with the image's mean colour as probabilities over (blue, green, red): CLASSES' order."""

    input_size = 16

    def __call__(self, batch):
        means = np.asarray(batch, dtype=np.float64).mean(axis=(1, 2))[:, ::-1]  # RGB -> blue, green, red
        return means / means.sum(axis=1, keepdims=True)


def test_predict_split_scores_the_split_originals_with_labels_in_classes_order(tmp_path):
    written = write_tinted_images(tmp_path, per_class=2)
    manifest = pd.DataFrame(
        {
            "path": [path for path, _ in written],
            "label": [CLASSES[index]["label"] for _, index in written],
            "split": ["test", "val"] * 3,
            "augmented": [False, False, False, False, True, False],
        }
    )

    test = predict_split(TintBackend(), manifest, "test", CLASSES, batch_size=1, desc="test")

    # Rows 0 and 2 (blue, green); row 4 (red) is an augmented copy and never scored.
    assert test.rows["path"].tolist() == [written[0][0], written[2][0]]
    assert test.y_true.tolist() == [0, 1]
    assert test.probabilities.shape == (2, 3)
    assert test.probabilities.argmax(axis=1).tolist() == [0, 1]
    assert test.seconds > 0


FLAT = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}


def _flat_photo(folder: Path, colour: str, size=(48, 32)) -> str:
    path = folder / f"{colour}.png"
    Image.new("RGB", size, FLAT[colour]).save(path)
    return str(path)


def _pixels_of(png: Path, colour: str) -> int:
    """How many pixels of the PNG are (within 3 levels) the flat colour."""
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    return int((np.abs(pixels - FLAT[colour]).max(axis=2) <= 3).sum())


def test_most_confident_mistakes_come_first_and_right_answers_never():
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]])
    # Rows 0 and 4 are right; the mistakes are row 2 (0.8 sure), row 1 (0.7), row 3 (0.6).
    y_true = [0, 0, 0, 1, 1]
    assert most_confident_mistakes(y_true, probabilities, limit=24).tolist() == [2, 1, 3]
    assert most_confident_mistakes(y_true, probabilities, limit=2).tolist() == [2, 1]


def test_misclassified_gallery_shows_the_most_confident_mistakes_first(tmp_path):
    names = ["Mullet", "Bass", "Trout"]
    paths = [_flat_photo(tmp_path, colour) for colour in ("blue", "red", "green")]
    y_true = [0, 0, 2]
    # blue: right; red: a Mullet taken for a Trout, 95% sure; green: a Trout taken for a Bass, 50% sure.
    probabilities = np.array([[0.9, 0.05, 0.05], [0.03, 0.02, 0.95], [0.1, 0.5, 0.4]])
    red_caption = "true: Mullet\npredicted: Trout\nconfidence 95.0%"
    green_caption = "true: Trout\npredicted: Bass\nconfidence 50.0%"

    plot_misclassified(paths, y_true, probabilities, names, tmp_path / "both.png", "cnn", limit=24)
    plot_misclassified(paths, y_true, probabilities, names, tmp_path / "one.png", "cnn", limit=1)

    with Image.open(tmp_path / "both.png") as both:
        assert both.size == (650, 360)  # two photos in one row, at the sheet's narrowest width
        assert both.text["Title"] == "cnn: 2 of 3 photos misclassified, most confident first"
        assert both.text["Description"] == f"{red_caption}\n\n{green_caption}"
    with Image.open(tmp_path / "one.png") as one:
        assert one.size == (650, 360)
        assert one.text["Title"] == "cnn: 2 of 3 photos misclassified, the 1 most confident shown"
        assert one.text["Description"] == red_caption
    assert _pixels_of(tmp_path / "one.png", "red") > 5000
    assert _pixels_of(tmp_path / "one.png", "green") == 0
    assert _pixels_of(tmp_path / "both.png", "green") > 5000
    assert _pixels_of(tmp_path / "both.png", "blue") == 0  # the right answer is never drawn


def test_misclassified_gallery_without_mistakes_says_so(tmp_path):
    paths = [_flat_photo(tmp_path, "blue")]
    plot_misclassified(paths, [0], np.array([[0.9, 0.1]]), ["Mullet", "Bass"], tmp_path / "none.png", "cnn", limit=24)
    with Image.open(tmp_path / "none.png") as none:
        assert none.size == (650, 200)
        assert none.text["Title"] == "cnn: 0 of 1 photos misclassified"
        assert none.text["Description"] == "No misclassified photos"
    assert _pixels_of(tmp_path / "none.png", "blue") == 0
