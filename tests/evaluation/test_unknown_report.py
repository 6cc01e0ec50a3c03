import numpy as np
import pandas as pd
import pytest
from support.model_metrics import model_scores

from fish_classifier.evaluation.summary import summary_markdown
from fish_classifier.evaluation.unknown_report import flag_tradeoff, score_histogram, unknown_figures, write_unknown_plots
from fish_classifier.serving.unknown import UnknownDetector


def test_unknown_figures_on_knownmodel_scores():
    detector = UnknownDetector("knn", {"train": np.eye(2, dtype=np.float32)}, threshold=0.5)
    scores = {"test fish": np.array([0.1, 0.2, 0.3, 0.6]), "not-fish": np.array([0.4, 0.7, 0.8, 0.9]),
              "fish-elsewhere": np.array([0.2, 0.55])}
    figures = unknown_figures(detector, 0.01, scores, fish_elsewhere_labels=["animal fish", "trout"],
                              catch_all_labels=["animal fish", "animal fish bass"])
    assert figures["flagged"] == {"test fish": 0.25, "not-fish": 0.75, "fish-elsewhere": 0.5}
    assert figures["images"] == {"test fish": 4, "not-fish": 4, "fish-elsewhere": 2}
    # 16 fish/not-fish pairs; the not-fish scores higher in all but (0.6, 0.4): AUROC 15/16.
    assert figures["auroc_test_fish_vs_not_fish"] == pytest.approx(15 / 16)
    assert figures["fish_elsewhere_catch_all"] == 0.5
    text = summary_markdown({"m": model_scores(0.9, 0.9, 1)}, "macro_f1", figures)
    assert "| not-fish | 4 | 75.0% |" in text and "AUROC, test fish against not-fish: **0.9375**" in text
    assert "(animal fish, animal fish bass): 50.0%" in text


def test_flag_tradeoff_and_histogram_count_each_group_on_shared_thresholds():
    scores = {"test fish": np.array([0.1, 0.3]), "not-fish": np.array([0.2, 0.4, 0.6, 0.8])}
    tradeoff = flag_tradeoff(scores)
    assert tradeoff["threshold"].tolist() == [0.1, 0.2, 0.3, 0.4, 0.6, 0.8]
    assert tradeoff["test fish"].tolist() == [0.5, 0.5, 0.0, 0.0, 0.0, 0.0]
    assert tradeoff["not-fish"].tolist() == [1.0, 0.75, 0.75, 0.5, 0.25, 0.0]
    histogram = score_histogram(scores, bins=2)  # bins [0.1, 0.45) and [0.45, 0.8]
    assert histogram["test fish"].tolist() == [1.0, 0.0] and histogram["not-fish"].tolist() == [0.5, 0.5]


def test_the_plots_name_every_group_even_one_the_set_lacks(tmp_path):
    detector = UnknownDetector("knn", {"train": np.eye(2, dtype=np.float32)}, threshold=0.5)
    scores = {"test fish": np.array([0.1, 0.2, 0.3, 0.6]), "not-fish": np.array([0.4, 0.7, 0.8, 0.9])}
    write_unknown_plots(scores, detector, tmp_path / "unknown", bins=4, model="m")
    histogram = pd.read_csv(tmp_path / "unknown" / "scores.csv")
    assert histogram.columns.tolist() == ["score", "test fish", "not-fish", "fish-elsewhere"]
    assert histogram["fish-elsewhere"].isna().all() and histogram["not-fish"].sum() == 1.0
    tradeoff = pd.read_csv(tmp_path / "unknown" / "tradeoff.csv")
    assert tradeoff.columns.tolist() == ["threshold", "test fish", "not-fish", "fish-elsewhere"]
    for png in ("scores.png", "tradeoff.png"):
        assert (tmp_path / "unknown" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
