import numpy as np
import pandas as pd
import pytest
from support.model_metrics import model_scores

from fish_classifier.evaluation.field import BUNDLE, field_figures, field_report
from fish_classifier.evaluation.metrics import field_scores
from fish_classifier.evaluation.summary import summary_markdown


def test_field_figures_on_known_predictions():
    predictions = pd.DataFrame({
        "label": ["trout", "trout", "trout", "bass", "other", "other"],
        "predicted": ["trout", "other", "bass", "bass", "other", "trout"],
        "confidence": [0.95, 0.99, 0.40, 0.90, 0.97, 0.30],
    })
    figures = field_figures(predictions, threshold=0.5, other_fish_labels=["other"])
    # Species photos (trout, bass): 2 of 4 right. Flagged (< 0.5): the wrong bass guess and the other fish
    # taken for a trout. Confidently wrong: the trout taken for other fish, 1 of 6.
    assert figures["species_right"] == 0.5 and figures["flagged"] == pytest.approx(2 / 6)
    assert figures["confidently_wrong"] == pytest.approx(1 / 6) and figures["other_fish_ok"] == 1.0
    assert figures["per_class"]["trout"] == {"images": 3, "right": pytest.approx(1 / 3),
                                             "flagged": pytest.approx(1 / 3)}
    # The unknown-photo detector's verdicts flag on top of the low confidence.
    unknown = field_figures(predictions, 0.5, ["other"], unknown=[False, True, False, False, False, False])
    assert unknown["flagged"] == 0.5 and unknown["confidently_wrong"] == 0.0
    assert unknown["unknown"] == pytest.approx(1 / 6) and figures["unknown"] is None  # the detector alone
    text = summary_markdown({"mobilenetv2": model_scores(0.97, 0.98, 90)}, "macro_f1", None,
                            {"mobilenetv2": figures, BUNDLE: unknown})
    assert "| **mobilenetv2** | 6 | 50.0% | n/a | 33.3% | 16.7% | 100.0% |" in text  # no top_k column: n/a
    assert "| deploy bundle | 6 | 50.0% | n/a | 50.0% | 0.0% | 100.0% |" in text
    assert "Its unknown-photo detector alone flags 16.7% of the field photos: fish, so each one it flags" in text
    assert "catch-all doubt" not in text


def test_the_closest_species_is_the_most_likely_class_that_is_not_the_catch_all():
    classes = [{"label": label} for label in ("other", "also other", "trout", "bass")]
    labels = ["trout", "trout", "bass", "bass", "other"]
    probabilities = np.array([[0.9, 0.0, 0.08, 0.02], [0.9, 0.0, 0.04, 0.06], [0.0, 0.0, 0.1, 0.9],
                              [0.8, 0.15, 0.04, 0.01], [0.9, 0.0, 0.0, 0.1]])
    scores = field_scores(labels, [2, 2, 3, 3, 0], probabilities, classes, ["other", "also other"])
    # Of the four species photos, one is right at the top; left the catch-alls out, the first trout and the first
    # bass are right too. The last bass is then taken for a trout, so nothing names it right.
    assert scores["species_accuracy"] == 0.25 and scores["closest_species_accuracy"] == 0.5
    predictions = pd.DataFrame({"path": [f"{i}.jpg" for i in range(5)], "label": labels,
                                "predicted": [classes[k]["label"] for k in probabilities.argmax(axis=1)],
                                "confidence": probabilities.max(axis=1)})
    figures = field_report({"mobilenetv2": predictions}, lambda name: 0.5, "mobilenetv2", ["other", "also other"],
                           lambda paths: (None, None), {"mobilenetv2": {"field": scores}})
    assert figures["mobilenetv2"]["species_right"] == 0.25
    assert figures["mobilenetv2"]["closest_species_right"] == figures[BUNDLE]["closest_species_right"] == 0.5
    text = summary_markdown({"mobilenetv2": model_scores(0.97, 0.98, 90)}, "macro_f1", None,
                            {"mobilenetv2": figures["mobilenetv2"]})
    assert "| **mobilenetv2** | 5 | 25.0% | 50.0% | 0.0% | 60.0% | 100.0% |" in text


def test_the_catch_all_doubt_flags_on_top_of_the_detector_and_the_summary_says_how_much():
    predictions = pd.DataFrame({"label": ["trout", "trout", "other"], "predicted": ["other", "other", "other"],
                                "confidence": [0.99, 0.99, 0.99]})
    plain = field_figures(predictions, 0.5, ["other"], unknown=[False, False, False])
    doubted = field_figures(predictions, 0.5, ["other"], unknown=[False, False, False], doubted=[True, False, True])
    # Two trout photos taken for other fish: both confidently wrong, until the doubt flags the first.
    assert plain["confidently_wrong"] == pytest.approx(2 / 3) and plain["doubted"] is None
    assert doubted["confidently_wrong"] == pytest.approx(1 / 3) and doubted["flagged"] == pytest.approx(2 / 3)
    assert doubted["doubted"] == pytest.approx(2 / 3) and doubted["other_fish_ok"] == 1.0
    assert doubted["species_right"] == plain["species_right"] == 0.0  # flagging names nothing right
    text = summary_markdown({"mobilenetv2": model_scores(0.97, 0.98, 90)}, "macro_f1", None,
                            {"mobilenetv2": plain, BUNDLE: doubted})
    assert ("Its catch-all doubt flags 66.7%: catch-all answers that ImageNet's head does not back." in text)
