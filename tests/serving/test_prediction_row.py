import io
import math
import os

import numpy as np
import pytest

from fish_classifier.serving.prediction_row import COLUMNS, Prediction, csv_cells, prediction_row, ranked, readable

CLASSES = [{"label": "x", "display": "Ex"}, {"label": "y", "display": "Why"}, {"label": "z", "display": "Zed"}]


def test_ranked_names_the_most_likely_class_and_the_top_k_most_likely_first():
    prediction = ranked("a.jpg", np.array([0.1, 0.7, 0.2]), CLASSES, top_k=2, threshold=0.8)
    assert (prediction.source, prediction.label, prediction.display_name) == ("a.jpg", "y", "Why")
    assert prediction.confidence == pytest.approx(0.7) and prediction.is_low_confidence is True
    assert prediction.top_k == [("y", "Why", pytest.approx(0.7)), ("z", "Zed", pytest.approx(0.2))]
    assert ranked("a.jpg", np.array([0.1, 0.7, 0.2]), CLASSES, top_k=1).is_low_confidence is None  # no threshold


def test_a_named_photo_has_its_species_and_no_closest_one():
    row = prediction_row(ranked("a.jpg", np.array([0.1, 0.7, 0.2]), CLASSES, top_k=2, threshold=0.5))
    assert tuple(row) == COLUMNS
    assert (row["path"], row["predicted"], row["species"], row["closest_species"]) == ("a.jpg", "y", "Why", "")
    assert (row["low_confidence"], row["unknown"], row["top_k"], row["error"]) == (False, False,
                                                                                  "y:0.7000; z:0.2000", "")


def test_a_doubted_catch_all_answer_keeps_its_answer_and_names_the_closest_other_class():
    prediction = ranked("deck.jpg", np.array([0.9, 0.02, 0.08]), CLASSES, top_k=3, threshold=0.5)
    prediction.doubted = prediction.is_low_confidence = True
    row = prediction_row(prediction)
    assert (row["predicted"], row["species"], row["closest_species"]) == ("x", "Ex", "Zed")
    assert row["low_confidence"] is True
    prediction.top_k = prediction.top_k[:1]  # a ranking of one class has no other to name
    assert prediction_row(prediction)["closest_species"] == ""


def test_an_unknown_photo_names_no_species_only_the_closest_one():
    prediction = ranked("receipt.png", np.array([0.6, 0.3, 0.1]), CLASSES, top_k=1, threshold=0.5)
    prediction.is_unknown, prediction.unknown_score = True, 42.0
    row = prediction_row(prediction, source="my receipt.png")
    assert (row["path"], row["predicted"], row["species"], row["closest_species"]) == ("my receipt.png", "", "", "Ex")
    assert (row["unknown"], row["unknown_score"], row["top_k"]) == (True, 42.0, "x:0.6000")


def test_an_unreadable_file_has_only_its_path_and_error():
    row = prediction_row(Prediction(source="a.jpg", label=None, display_name=None, confidence=math.nan,
                                    error="file is empty"))
    cells = csv_cells(row)
    assert cells == {"path": "a.jpg", "predicted": "", "species": "", "closest_species": "", "confidence": "",
                     "low_confidence": "", "unknown": "", "unknown_score": "", "unknown_reason": "", "top_k": "",
                     "error": "file is empty"}


def test_every_text_cell_a_spreadsheet_would_run_gets_a_leading_quote():
    prediction = Prediction(source="=HYPERLINK(\"evil.example\";\"x\").jpg", label="+label", display_name="@Trout",
                            confidence=0.5, top_k=[("-label", "Trout", 0.5)], error=None, unknown_score=0.1234567)

    cells = csv_cells(prediction_row(prediction))

    assert cells["path"] == "'=HYPERLINK(\"evil.example\";\"x\").jpg"
    assert (cells["predicted"], cells["species"]) == ("'+label", "'@Trout")
    assert cells["top_k"].startswith("'-label:")
    assert (cells["confidence"], cells["low_confidence"], cells["unknown"]) == ("0.500000", False, False)
    assert cells["unknown_score"] == "0.123457"


@pytest.mark.parametrize(
    ("name", "shown"),
    [(os.fsdecode(b"bad\xff.jpg"), "bad\\xff.jpg"), ("caf\u00e9.jpg", "caf\u00e9.jpg"), ("plain.jpg", "plain.jpg"),
     ("lone\ud800.jpg", "lone\\ud800.jpg")],
)  # fmt: skip
def test_a_file_name_byte_that_is_not_utf8_is_shown_escaped_and_the_rest_as_it_is(name, shown):
    assert readable(name) == shown
    assert readable(name).encode("utf-8")  # what the CSV and stderr can take
    assert csv_cells({"path": name})["path"] == shown


def test_the_apps_table_the_clis_csv_and_predictions_csv_are_one_row(monkeypatch, tmp_path):
    """The three tables a prediction becomes are each built by `prediction_row`, with the same columns and cells."""
    import importlib.util

    import pandas as pd
    from support import REPO_ROOT

    from fish_classifier.cli import predictions_csv
    from fish_classifier.evaluation import predictions
    from fish_classifier.serving import prediction_row as shared

    monkeypatch.syspath_prepend(str(REPO_ROOT / "app"))  # the app's own modules, as `streamlit run` finds them
    spec = importlib.util.spec_from_file_location("fish_app", REPO_ROOT / "app" / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    calls = []

    def spied(prediction, source=None):
        calls.append(prediction.source)
        return shared.prediction_row(prediction, source)

    for module in (app, predictions_csv, predictions):
        monkeypatch.setattr(module, "prediction_row", spied)
    probabilities = np.array([0.25, 0.15, 0.6])

    app_csv = pd.read_csv(io.StringIO(app.csv_text(app.results_table(
        [("a.jpg", ranked("a.jpg", probabilities, CLASSES, top_k=2))]))), keep_default_na=False, dtype=str)
    with predictions_csv.PredictionsCsv(tmp_path / "cli.csv") as out:
        out.write(ranked("a.jpg", probabilities, CLASSES, top_k=2))
        out.commit()
    cli_csv = pd.read_csv(tmp_path / "cli.csv", keep_default_na=False, dtype=str)
    predictions.predictions_table(["a.jpg"], [1], probabilities[np.newaxis], CLASSES, top_k=2).to_csv(
        tmp_path / "predictions.csv", index=False)
    evaluate_csv = pd.read_csv(tmp_path / "predictions.csv", keep_default_na=False, dtype=str)

    assert calls == ["a.jpg"] * 3
    assert tuple(app_csv.columns) == tuple(cli_csv.columns) == COLUMNS
    assert tuple(evaluate_csv.columns) == ("path", "label", *COLUMNS[1:])  # its truth beside the shared columns
    assert evaluate_csv["label"].tolist() == ["y"]
    shared_cells = ["path", "predicted", "species", "closest_species", "unknown", "top_k", "error"]
    assert (app_csv[shared_cells].to_dict("records") == cli_csv[shared_cells].to_dict("records")
            == evaluate_csv[shared_cells].to_dict("records")
            == [{"path": "a.jpg", "predicted": "z", "species": "Zed", "closest_species": "", "unknown": "False",
                 "top_k": "z:0.6000; x:0.2500", "error": ""}])
    assert float(app_csv["confidence"][0]) == float(cli_csv["confidence"][0]) == float(evaluate_csv["confidence"][0])
