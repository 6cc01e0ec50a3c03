"""How the unknown-photo detector does on the measuring photos (data/unknown, never the outlier pool): the
share of each group flagged, AUROC, and the score histogram and trade-off that metrics/unknown/ plots."""

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from fish_classifier.data.unknown_set import FISH_ELSEWHERE, GROUPS, NOT_FISH
from fish_classifier.evaluation.plots import plot_flag_tradeoff, plot_unknown_scores
from fish_classifier.serving.unknown import UnknownDetector

TEST_FISH = "test fish"
SMALL_TEST_FISH = "small test fish"  # the test fish brought down to select.unknown_small_px


def unknown_figures(detector: UnknownDetector, val_flag_rate: float, scores: dict[str, np.ndarray],
                    fish_elsewhere_labels=None, catch_all_labels=()) -> dict:
    """How the detector does on each group of photos: `scores` maps a group (test fish, not-fish,
    fish-elsewhere, ...) to its unknown scores; `fish_elsewhere_labels` are the labels those fish got."""
    figures = {
        "method": detector.method,
        "threshold": detector.threshold,
        "val_flag_rate": val_flag_rate,
        "images": {group: int(len(values)) for group, values in scores.items()},
        "flagged": {group: float(detector.is_unknown(values).mean()) for group, values in scores.items()},
        "auroc_test_fish_vs_not_fish": auroc(scores[TEST_FISH], scores[NOT_FISH]) if NOT_FISH in scores else None,
        "catch_all_labels": list(catch_all_labels),
        "fish_elsewhere_catch_all": None,
    }
    if fish_elsewhere_labels is not None and len(fish_elsewhere_labels):
        figures["fish_elsewhere_catch_all"] = float(np.isin(fish_elsewhere_labels, list(catch_all_labels)).mean())
    return figures


def auroc(fish_scores, unknown_scores) -> float:
    """Area under the ROC curve of the unknown score telling `unknown_scores` (positive) from `fish_scores`."""
    truth = np.r_[np.zeros(len(fish_scores)), np.ones(len(unknown_scores))]
    return float(roc_auc_score(truth, np.r_[fish_scores, unknown_scores]))


def score_histogram(scores: dict[str, np.ndarray], bins: int) -> pd.DataFrame:
    """Share of each group's photos per score bin (one column per group), on bins shared by all groups."""
    edges = np.histogram_bin_edges(np.concatenate(list(scores.values())), bins=bins)
    table = {"score": (edges[:-1] + edges[1:]) / 2}
    for group, values in scores.items():
        table[group] = np.histogram(values, bins=edges)[0] / max(len(values), 1)
    return pd.DataFrame(table)


def flag_tradeoff(scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """The share of each group flagged as the threshold moves over every score seen."""
    thresholds = np.unique(np.concatenate(list(scores.values())))
    table = {"threshold": thresholds}
    for group, values in scores.items():
        ordered = np.sort(values)
        table[group] = 1.0 - np.searchsorted(ordered, thresholds, side="right") / len(ordered)
    return pd.DataFrame(table)


def write_unknown_plots(scores: dict[str, np.ndarray], detector: UnknownDetector, out_dir, *, bins: int,
                        model: str) -> None:
    """scores.csv/.png (each group's score histogram) and tradeoff.csv/.png (not-fish flagged against fish from
    elsewhere flagged as the threshold moves, or against the test fish when the set has no fish from elsewhere)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = [TEST_FISH, *GROUPS]  # all of them, empty where the set has none: dvc.yaml's plots name each
    histogram = score_histogram(scores, bins=bins)
    histogram.reindex(columns=["score", *columns]).to_csv(out_dir / "scores.csv", index=False)
    plot_unknown_scores(histogram, detector.threshold, out_dir / "scores.png", f"{model}: unknown-photo scores")
    tradeoff = flag_tradeoff(scores)
    tradeoff.reindex(columns=["threshold", *columns]).to_csv(out_dir / "tradeoff.csv", index=False)
    x = FISH_ELSEWHERE if FISH_ELSEWHERE in scores else TEST_FISH
    y = NOT_FISH if NOT_FISH in scores else TEST_FISH
    marked = (detector.is_unknown(scores[x]).mean(), detector.is_unknown(scores[y]).mean())
    plot_flag_tradeoff(tradeoff, x, y, marked, out_dir / "tradeoff.png", f"{model}: flagged as the threshold moves")
