"""Scoring a classifier on a split: scikit-learn's metrics and calibration error (plots.py draws them)."""

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from fish_classifier.evaluation.calibration import count_errors, fit_temperature, negative_log_likelihood
from fish_classifier.params import Section, integer, number
from fish_classifier.serving.bundle_schema import apply_temperature

HEADLINE_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1")
PER_CLASS_COLUMNS = ["label", "display", "precision", "recall", "f1", "support"]


class EvaluateSettings(Section):
    """params.yaml's `evaluate`."""

    batch_size: integer(ge=1)
    top_k: integer(ge=1)  # the most likely classes listed per test photo in predictions.csv
    ece_bins: integer(ge=1)
    temperature_prior_sigma: number(gt=0)  # width of the prior on log T that the validation fit starts from
    gallery_size: integer(ge=1)  # misclassified test photos drawn in misclassified.png, at most


def headline(y_true, y_pred, num_classes: int) -> dict:
    """Accuracy and macro precision/recall/F1 for integer class indices in range(num_classes).

    Every class counts in the macro average, also one the model never predicts (its precision is 0
    rather than undefined).
    """
    indices = list(range(num_classes))
    macro = precision_recall_fscore_support(y_true, y_pred, labels=indices, average="macro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(macro[0]),
        "macro_recall": float(macro[1]),
        "macro_f1": float(macro[2]),
    }


def per_class_table(y_true, y_pred, classes: list[dict]) -> pd.DataFrame:
    """One row per class of `classes` (data/classes.json's entries, index i = class i): label, display name,
    precision, recall, F1 (to 4 places) and support (the class's true images). A class never predicted has
    precision 0."""
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(classes))), average=None, zero_division=0
    )
    return pd.DataFrame(
        {
            "label": [c["label"] for c in classes],
            "display": [c["display"] for c in classes],
            "precision": precision.round(4),
            "recall": recall.round(4),
            "f1": f1.round(4),
            "support": support.astype(int),
        },
        columns=PER_CLASS_COLUMNS,
    )


def field_scores(labels, y_true, probabilities, classes: list[dict], other_fish_labels: list[str]) -> dict:
    """How a model names the field photos (species photographed outside the studio), from its `probabilities`
    (n, classes): overall accuracy, the accuracy on the photos of a named species (a class outside
    `other_fish_labels`, which name no species), the closest species accuracy on them (the most likely class
    that is none of `other_fish_labels`: the species the app names beside a doubted catch-all answer, and what the
    model knows of the species once the catch-all is left out), and each class's accuracy ({label: {images,
    accuracy}}). `labels[i]` is photo i's true label, `y_true[i]` its class index."""
    probabilities, y_true = np.asarray(probabilities), np.asarray(y_true)
    labels, right = np.asarray(labels), y_true == probabilities.argmax(axis=1)
    species = ~np.isin(labels, other_fish_labels)
    named = ~np.isin([c["label"] for c in classes], other_fish_labels)
    closest_right = y_true == np.where(named, probabilities, -np.inf).argmax(axis=1)
    per_class = {c["label"]: {"images": int((labels == c["label"]).sum()),
                              "accuracy": float(right[labels == c["label"]].mean())}
                 for c in classes if (labels == c["label"]).any()}
    return {
        "images": int(len(labels)),
        "accuracy": float(right.mean()) if len(labels) else None,
        "species_images": int(species.sum()),
        "species_accuracy": float(right[species].mean()) if species.any() else None,
        "closest_species_accuracy": float(closest_right[species].mean()) if species.any() else None,
        "per_class": per_class,
    }


def confusion(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Counts with rows = actual class, columns = predicted class."""
    return confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))


def reliability_table(confidences, correct, bins: int) -> pd.DataFrame:
    """Per confidence bin (equal width on (0, 1]): mean confidence, accuracy and image count; empty bins left out."""
    confidences = np.asarray(confidences, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    # Right-closed bins, as in Guo et al. (2017): a confidence of exactly 1.0 lands in the top bin.
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidences, side="left") - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        if count:
            rows.append(
                {
                    "bin": b,
                    "lower": float(edges[b]),
                    "upper": float(edges[b + 1]),
                    "confidence": float(confidences[members].mean()),
                    "accuracy": float(correct[members].mean()),
                    "count": count,
                }
            )
    return pd.DataFrame(rows, columns=["bin", "lower", "upper", "confidence", "accuracy", "count"])


def expected_calibration_error(confidences, correct, bins: int) -> float:
    """Mean |accuracy - confidence| over the bins, each weighted by its share of the images."""
    table = reliability_table(confidences, correct, bins)
    if table.empty:
        return 0.0
    weights = table["count"] / table["count"].sum()
    return float((weights * (table["accuracy"] - table["confidence"]).abs()).sum())


def calibrate(val_probs, y_val, test_probs, y_test, bins: int, prior_sigma: float) -> tuple[dict, np.ndarray]:
    """One temperature fitted on the validation split (`calibration.fit_temperature`, its prior on log T of
    width `prior_sigma`): the report of the test split's ECE and NLL before and after it, and the test split's
    calibrated probabilities."""
    temperature = fit_temperature(val_probs, y_val, prior_sigma)
    calibrated = apply_temperature(test_probs, temperature)
    test_probs = np.asarray(test_probs)
    correct = test_probs.argmax(axis=1) == np.asarray(y_test)  # a temperature never changes the top class
    report = {
        "temperature": temperature,
        "val_errors": count_errors(val_probs, y_val),  # the fewer, the more the prior decides the temperature
        "ece_before": expected_calibration_error(test_probs.max(axis=1), correct, bins),
        "ece_after": expected_calibration_error(calibrated.max(axis=1), correct, bins),
        "nll_before": negative_log_likelihood(test_probs, y_test),
        "nll_after": negative_log_likelihood(calibrated, y_test),
    }
    return report, calibrated


def calibration_report(val_probs, y_val, test_probs, y_test, bins: int, prior_sigma: float) -> dict:
    """`calibrate`'s report alone."""
    return calibrate(val_probs, y_val, test_probs, y_test, bins, prior_sigma)[0]


def most_confident_mistakes(y_true, probabilities: np.ndarray, limit: int) -> np.ndarray:
    """Row indices of the wrongly predicted images, the most confident mistake first (ties in row order),
    at most `limit` of them."""
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(probabilities.argmax(axis=1) != np.asarray(y_true))
    return wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
