"""`select`'s part of the catch-all doubt (`serving.catch_all`): set it on the validation photos' LiteRT outputs, as
serving sees them, and measure what it flags on the test photos. The field photos choose nothing."""

import numpy as np

from fish_classifier.serving.bundle_writer import add_catch_all_doubt
from fish_classifier.serving.catch_all import CatchAllDoubt, fit_catch_all_doubt
from fish_classifier.serving.inference import IMAGENET, PROBABILITIES


def fit_bundle_doubt(fish_outputs: dict[str, dict[str, np.ndarray]], classes: list[dict], labels: list[str],
                     rate: float) -> tuple[CatchAllDoubt | None, dict]:
    """(the rule, its figures) from the serving outputs of the val and test fish (`fish_outputs`, as
    `BundleDetector.fish_outputs` keeps them); (None, {}) when the model has no ImageNet branch (nothing to back or
    doubt a catch-all answer with) or `labels` (data.other_fish_labels) names none of `classes`. Figures: the
    threshold, and the shares of the test photos, and of the test photos answered with a catch-all label, that it
    flags (their answers stay as they are: test accuracy does not move)."""
    if IMAGENET not in fish_outputs["val"] or not set(labels) & {entry["label"] for entry in classes}:
        return None, {}
    doubt = fit_catch_all_doubt(_top_labels(classes, fish_outputs["val"]), fish_outputs["val"][IMAGENET], labels, rate)
    top = _top_labels(classes, fish_outputs["test"])
    doubted, catch_all = doubted_answers(doubt, classes, fish_outputs["test"]), np.isin(top, labels)
    return doubt, {"rate": doubt.rate, "threshold": doubt.threshold, "labels": list(doubt.labels),
                   "test_flagged": float(doubted.mean()) if len(top) else None,
                   "test_catch_all_answers": int(catch_all.sum()),
                   "test_catch_all_flagged": float(doubted[catch_all].mean()) if catch_all.any() else None}


def add_bundle_doubt(deploy, fish_outputs: dict[str, dict[str, np.ndarray]], classes: list[dict], labels: list[str],
                     rate: float) -> tuple[CatchAllDoubt | None, dict]:
    """`fit_bundle_doubt`, the rule then written into the bundle at `deploy` (where there is one)."""
    doubt, figures = fit_bundle_doubt(fish_outputs, classes, labels, rate)
    add_catch_all_doubt(deploy, doubt)
    return doubt, figures


def doubted_answers(doubt: CatchAllDoubt | None, classes: list[dict],
                    outputs: dict[str, np.ndarray]) -> np.ndarray | None:
    """The rule's verdict (True: a doubted catch-all answer) on each photo of serving `outputs`; None without a rule."""
    if doubt is None:
        return None
    return doubt.doubts(_top_labels(classes, outputs), outputs[IMAGENET])


def _top_labels(classes: list[dict], outputs: dict[str, np.ndarray]) -> np.ndarray:
    return np.array([classes[k]["label"] for k in outputs[PROBABILITIES].argmax(axis=1)], dtype=object)
