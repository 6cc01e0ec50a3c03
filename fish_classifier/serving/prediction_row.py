"""A prediction, and the one row it becomes: the app's results table and its CSV, `fish-classifier predict`'s
CSV and `evaluate`'s predictions.csv are all made of `prediction_row`s.

An unknown photo's row names no species: `predicted` and `species` are empty, and `closest_species` holds the
species it is nearest to, which is not an answer (the top-k still lists every label with its probability). A
doubted catch-all answer (`Prediction.doubted`) keeps its answer, and `closest_species` holds the first other class
of its ranking: the named species the photo may be, photographed outside the studio.
A file that could not be read has only its `path` and `error`.

Serving code, so that `fish-classifier predict` writes its rows (their top-k column with `format_top_k`) without
loading the evaluation code (scikit-learn, pandas, Matplotlib: over a second of start-up).
"""

import math
from dataclasses import dataclass, field

import numpy as np

from fish_classifier.serving.spreadsheet import safe_cell

COLUMNS = ("path", "predicted", "species", "closest_species", "confidence", "low_confidence", "unknown",
           "unknown_score", "unknown_reason", "top_k", "error")
SHARE_COLUMNS = ("confidence",)  # a probability from 0 to 1: shown as a percent where a table can


@dataclass
class Prediction:
    source: str
    label: str | None
    display_name: str | None
    confidence: float
    top_k: list[tuple[str, str, float]] = field(default_factory=list)
    # Below the bundle's threshold; None where no threshold applies yet (`evaluate`: `select` sets it).
    is_low_confidence: bool | None = False
    error: str | None = None
    # Unlike anything the model was trained on (fish_classifier.serving.unknown); its label is then not an answer.
    is_unknown: bool = False
    unknown_score: float = math.nan
    # Why the photo is unknown whatever the detector says (`fish_classifier.images.no_content`), or None.
    unknown_reason: str | None = None
    # A catch-all answer the ImageNet branch does not back (`catch_all.CatchAllDoubt`): it may be a named species
    # photographed outside the studio. Such a prediction is low-confidence too.
    doubted: bool = False


def ranked(source: str, probabilities: np.ndarray, classes: list[dict], top_k: int,
           threshold: float | None = None) -> Prediction:
    """The Prediction of one photo's class `probabilities` (in `classes` order): its most likely class and the
    `top_k` most likely, low-confidence below `threshold` (None: not judged)."""
    order = np.argsort(-probabilities)[:top_k]
    best, confidence = classes[order[0]], float(probabilities[order[0]])
    return Prediction(
        source=source,
        label=best["label"],
        display_name=best["display"],
        confidence=confidence,
        top_k=[(classes[k]["label"], classes[k]["display"], float(probabilities[k])) for k in order],
        is_low_confidence=None if threshold is None else confidence < threshold,
    )


def format_top_k(top_k) -> str:
    """The top-k column's one format: `label:probability` pairs, most likely first, joined by '; ' (labels may
    hold spaces, never ';')."""
    return "; ".join(f"{label}:{probability:.4f}" for label, probability in top_k)


def prediction_row(prediction: Prediction, source: str | None = None) -> dict:
    """`prediction` as one row of COLUMNS, numbers as numbers (NaN where there is none, None where a yes or no
    does not apply); `source` names the photo instead of `prediction.source` (the app: the upload's name)."""
    failed = bool(prediction.error)
    named = not failed and not prediction.is_unknown
    return {
        "path": prediction.source if source is None else source,
        "predicted": prediction.label if named else "",
        "species": prediction.display_name if named else "",
        "closest_species": "" if failed else closest_species(prediction),
        "confidence": prediction.confidence,
        "low_confidence": None if failed else prediction.is_low_confidence,
        "unknown": None if failed else prediction.is_unknown,
        "unknown_score": prediction.unknown_score,
        "unknown_reason": prediction.unknown_reason or "",  # a photo that shows nothing: too small, one flat colour
        "top_k": format_top_k((label, probability) for label, _, probability in prediction.top_k),
        "error": prediction.error or "",
    }


def closest_species(prediction: Prediction) -> str:
    """The display name of the species a photo is nearest to, when its answer is not one: an unknown photo's top
    class, or a doubted catch-all answer's first other class in the ranking; "" for any other photo."""
    if prediction.is_unknown:
        return prediction.display_name or ""
    if prediction.doubted:
        return next((display for label, display, _ in prediction.top_k if label != prediction.label), "")
    return ""


def csv_cells(row: dict) -> dict:
    """A `prediction_row` (or any row) as CSV text: confidence to 6 decimals, the unknown score to 6 digits,
    nothing for NaN or None, and every text cell safe to open in a spreadsheet and to write as UTF-8."""
    return {column: _cell(column, value) for column, value in row.items()}


def _cell(column: str, value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if column == "confidence":
        return f"{value:.6f}"
    if column == "unknown_score":
        return f"{value:.6g}"
    return safe_cell(readable(value) if isinstance(value, str) else value)


def readable(text: str) -> str:
    """`text` as UTF-8 can hold it. Python keeps each byte of a file name that is not UTF-8 as a lone surrogate,
    which no UTF-8 writer takes: such a byte is shown as `\\xff`, the rest of the name as it is."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate no file name gave
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
