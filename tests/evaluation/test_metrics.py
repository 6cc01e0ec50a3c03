import numpy as np
import pytest

from fish_classifier.evaluation.metrics import (
    PER_CLASS_COLUMNS,
    calibration_report,
    confusion,
    expected_calibration_error,
    headline,
    most_confident_mistakes,
    per_class_table,
    reliability_table,
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


def test_most_confident_mistakes_come_first_and_right_answers_never():
    probabilities = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4], [0.45, 0.55]])
    # Rows 0 and 4 are right; the mistakes are row 2 (0.8 sure), row 1 (0.7), row 3 (0.6).
    y_true = [0, 0, 0, 1, 1]
    assert most_confident_mistakes(y_true, probabilities, limit=24).tolist() == [2, 1, 3]
    assert most_confident_mistakes(y_true, probabilities, limit=2).tolist() == [2, 1]
