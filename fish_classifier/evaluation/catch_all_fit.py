"""`select`'s part of the catch-all doubt (`serving.catch_all`): set it on the validation photos through the bundle's
LiteRT model, as serving sees them, and measure what it flags on the test photos. The field photos choose nothing."""

import numpy as np
import pandas as pd

from fish_classifier.data.manifest import scored_split
from fish_classifier.serving.bundle_writer import add_catch_all_doubt
from fish_classifier.serving.catch_all import CatchAllDoubt, fit_catch_all_doubt
from fish_classifier.serving.inference import IMAGENET, PROBABILITIES, outputs_for_files


def fit_bundle_doubt(backend, manifest: pd.DataFrame, classes: list[dict], labels: list[str], rate: float, *,
                     batch_size: int) -> tuple[CatchAllDoubt | None, dict]:
    """(the rule, its figures) for a bundle's LiteRT `backend`; (None, {}) when the model has no ImageNet branch
    (nothing to back or doubt a catch-all answer with) or `labels` (data.other_fish_labels) names none of `classes`.
    Figures: the threshold, and the shares of the test photos, and of the test photos answered with a catch-all
    label, that it flags (their answers stay as they are: test accuracy does not move)."""
    if not set(labels) & {entry["label"] for entry in classes}:
        return None, {}
    answers = {split: _answers(backend, scored_split(manifest, split)["path"], classes, batch_size, f"doubt {split}")
               for split in ("val", "test")}
    if answers["val"] is None:
        return None, {}
    doubt = fit_catch_all_doubt(*answers["val"], labels, rate)
    top, imagenet = answers["test"]
    doubted, catch_all = doubt.doubts(top, imagenet), np.isin(top, labels)
    return doubt, {"rate": doubt.rate, "threshold": doubt.threshold, "labels": list(doubt.labels),
                   "test_flagged": float(doubted.mean()) if len(top) else None,
                   "test_catch_all_answers": int(catch_all.sum()),
                   "test_catch_all_flagged": float(doubted[catch_all].mean()) if catch_all.any() else None}


def add_bundle_doubt(deploy, backend, manifest: pd.DataFrame, classes: list[dict], labels: list[str], rate: float, *,
                     batch_size: int) -> tuple[CatchAllDoubt | None, dict]:
    """`fit_bundle_doubt`, the rule then written into the bundle at `deploy` (where there is one)."""
    doubt, figures = fit_bundle_doubt(backend, manifest, classes, labels, rate, batch_size=batch_size)
    add_catch_all_doubt(deploy, doubt)
    return doubt, figures


def doubt_photos(backend, doubt: CatchAllDoubt | None, classes: list[dict], paths, *, batch_size: int) -> np.ndarray:
    """The rule's verdict (True: a doubted catch-all answer) on each photo of `paths`; all False without a rule."""
    if doubt is None:
        return np.zeros(len(paths), dtype=bool)
    return doubt.doubts(*_answers(backend, list(paths), classes, batch_size, "doubt field"))


def _answers(backend, paths, classes: list[dict], batch_size: int, desc: str):
    """(top class labels, ImageNet probabilities) of `paths`, or None when the model has no ImageNet branch."""
    outputs = outputs_for_files(backend, list(paths), batch_size=batch_size, desc=desc)
    if IMAGENET not in outputs:
        return None
    top = np.array([classes[k]["label"] for k in outputs[PROBABILITIES].argmax(axis=1)], dtype=object)
    return top, outputs[IMAGENET]
