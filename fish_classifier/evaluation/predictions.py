"""A split's predictions: the model run over the photos a split is scored on, beside their true labels."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fish_classifier.data.manifest import label_indices, scored_split
from fish_classifier.serving.inference import probabilities_for_files


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
