"""bench/unknown_ceiling.py, tiny: its figures on known scores, the cross-fitted validation scores, and a bundle
it cannot compare refused in one line."""

import numpy as np
import pytest
from support.benches import load_bench
from support.clusters import clusters

unknown_ceiling = load_bench("unknown_ceiling")


def test_figures_flag_at_the_threshold_and_at_the_test_fish_ceiling():
    test_fish = np.arange(100, dtype=np.float64)  # the ceiling flags at most 1 of them: above 98
    scores = {"test fish": test_fish, "not-fish": np.array([50.0, 98.5, 99.5, 120.0]),
              "fish-elsewhere": np.array([10.0, 60.0]), "val": np.zeros(3)}
    figures = unknown_ceiling.figures(scores, threshold=55.0)
    assert figures["flagged"] == {"test fish": 0.44, "not-fish": 0.75, "fish-elsewhere": 0.5}
    assert figures["not_fish_at_1pct_test_fish"] == 0.75
    # Each not-fish against the 100 test fish: 50.5 (a tie counts half), 99, 100 and 100 pairs won.
    assert figures["auroc"] == pytest.approx((50.5 + 99 + 100 + 100) / 400)


def test_cross_fitted_validation_scores_come_from_the_fold_left_out():
    train, train_labels = clusters(0, per_class=40)
    val, val_labels = clusters(1, per_class=10)
    unknown, _ = clusters(2, per_class=5, shift=2.0)
    embeddings = {"train": train, "val": val, "test fish": clusters(3, per_class=5)[0], "not-fish": unknown,
                  "fish-elsewhere": unknown[:4]}
    scores = unknown_ceiling.cross_fitted(embeddings, {"train": train_labels, "val": val_labels}, power=0.5)
    assert {group: len(values) for group, values in scores.items()} == {
        "test fish": 15, "not-fish": 15, "fish-elsewhere": 4, "val": 30}
    assert (scores["val"] > 0).all() and scores["not-fish"].min() > scores["test fish"].max()


def test_a_bundle_without_an_imagenet_backbone_is_refused(colour_bundle, tiny_project):
    with pytest.raises(SystemExit) as stopped:
        unknown_ceiling.main(["--bundle", str(colour_bundle)])
    assert str(stopped.value) == "the bundle's model 'colour-test-cnn' has no ImageNet backbone to compare with"
