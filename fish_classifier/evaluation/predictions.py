"""A split's predictions: the model run over the photos a split is scored on, beside their true labels, and
the table evaluate writes of them (predictions.csv), made of the same rows as the app's and the CLI's."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fish_classifier.data.manifest import label_indices, scored_split
from fish_classifier.serving.inference import probabilities_for_files
from fish_classifier.serving.prediction_row import COLUMNS, prediction_row, ranked


@dataclass
class SplitPredictions:
    """A split's scored images (its manifest rows), their true class indices and the model's probabilities."""

    rows: pd.DataFrame
    y_true: np.ndarray
    probabilities: np.ndarray
    seconds: float  # spent in the model, decoding excluded


def predict_split(backend, manifest: pd.DataFrame, split: str, classes: list[dict], *, batch_size: int,
                  desc: str) -> SplitPredictions:
    """Run `backend` over the images `split` is scored on (never the augmented copies), labels in `classes` order."""
    rows = scored_split(manifest, split)
    probabilities, seconds = probabilities_for_files(backend, rows["path"], batch_size=batch_size, desc=desc)
    return SplitPredictions(rows, label_indices(rows["label"], classes), probabilities, seconds)


def predictions_table(paths, y_true, probabilities: np.ndarray, classes: list[dict], top_k: int) -> pd.DataFrame:
    """One row per photo: its path and true `label`, then the rest of its `prediction_row`, the app's and the CLI's
    columns (the predicted label, species, confidence and top-k; no threshold or unknown-photo detector applies
    yet, so `low_confidence` is empty and `unknown` False)."""
    rows = []
    for path, truth, photo in zip(paths, y_true, probabilities, strict=True):
        row = prediction_row(ranked(str(path), photo, classes, top_k))
        rows.append({"path": row.pop("path"), "label": classes[truth]["label"], **row})
    return pd.DataFrame(rows, columns=["path", "label", *COLUMNS[1:]])
