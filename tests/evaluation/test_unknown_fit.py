import numpy as np
import pytest
from support.clusters import clusters, head

from fish_classifier.evaluation.unknown_fit import (
    FIT_METHODS,
    EmptyOutlierPool,
    UnknownSettings,
    fit_detector,
    fit_unknown_detector,
    validation_threshold,
)
from fish_classifier.serving.catch_all import IMAGENET_FISH_CLASSES
from fish_classifier.serving.unknown import RELATIVE


@pytest.mark.parametrize("method", FIT_METHODS)
def test_each_method_flags_a_shifted_cluster_and_passes_held_out_fish(method):
    train, labels = clusters(0)
    val, _ = clusters(1)
    unknown, _ = clusters(2, shift=2.0)
    detector = fit_unknown_detector(UnknownSettings(method, 0.5, 3, 0.01), train, labels, val, head())
    assert detector.is_unknown(detector.score(val)).mean() <= 0.01
    assert detector.is_unknown(detector.score(unknown)).mean() >= 0.99


def test_the_threshold_is_the_lowest_flagging_at_most_the_share_of_validation_fish():
    scores = np.arange(100, dtype=np.float64)
    assert validation_threshold(scores, 0.05) == 94.0 and (scores > 94.0).sum() == 5
    with pytest.raises(ValueError, match=r"select.unknown_val_flag_rate must be within \[0, 1\], got 2"):
        validation_threshold(scores, 2)


def test_energy_needs_the_head():
    train, labels = clusters(0)
    with pytest.raises(ValueError, match="the energy score needs the head's kernel and bias"):
        fit_detector("energy", train, labels)


def test_nan_embeddings_are_refused_at_fit_and_nan_validation_scores_at_the_threshold():
    train, labels = clusters(0)
    broken = train.copy()
    broken[3, 5] = np.nan
    with pytest.raises(ValueError, match="the train embeddings hold 1 non-finite values"):
        fit_detector("knn", broken, labels)
    with pytest.raises(ValueError, match="the outlier pool embeddings hold 1 non-finite values"):
        fit_detector("mahalanobis", train, labels, outlier_embeddings=broken)
    with pytest.raises(ValueError, match="1 of the validation scores are not finite"):
        validation_threshold([0.1, np.nan, 0.3], 0.0)


def test_relative_scores_an_outlier_cluster_above_the_fish_and_keeps_the_rate_on_validation_fish():
    train, labels = clusters(0)
    val, _ = clusters(1)
    pool, _ = clusters(3, per_class=50, shift=1.5)  # the pool: photos that are no fish, for fitting alone
    outliers, _ = clusters(4, per_class=50, shift=1.5)  # others of their kind, never seen
    fish, _ = clusters(5)
    settings = UnknownSettings("mahalanobis", 0.5, 1, 0.01, outliers="relative")
    detector = fit_unknown_detector(settings, train, labels, val, outlier_embeddings=pool)
    assert detector.method == RELATIVE
    assert detector.is_unknown(detector.score(val)).mean() <= 0.01  # set on validation fish, never on the pool
    assert np.median(detector.score(outliers)) > np.max(detector.score(fish))
    assert detector.is_unknown(detector.score(outliers)).mean() >= 0.99
    # Ignored, the pool changes nothing: the plain mahalanobis detector.
    ignored = fit_unknown_detector(UnknownSettings("mahalanobis", 0.5, 1, 0.01), train, labels, val,
                                   outlier_embeddings=pool)
    assert ignored.method == "mahalanobis" and set(ignored.arrays) == {"means", "whitening"}


def test_an_empty_pool_with_relative_is_refused_naming_the_source():
    train, labels = clusters(0)
    settings = UnknownSettings("mahalanobis", 0.5, 1, 0.01, outliers="relative")
    for empty in (None, np.zeros((0, 32), np.float32)):
        with pytest.raises(EmptyOutlierPool, match="point data.outlier_source at photos that are no fish"):
            fit_unknown_detector(settings, train, labels, train, outlier_embeddings=empty)


def test_a_pool_of_one_photo_or_a_method_other_than_mahalanobis_is_refused():
    train, labels = clusters(0)
    with pytest.raises(ValueError, match="give one embedding: a Gaussian needs at least two different photos"):
        fit_detector("mahalanobis", train, labels, outlier_embeddings=np.repeat(train[:1], 3, axis=0))
    with pytest.raises(ValueError, match="relative needs select.unknown_method mahalanobis, got 'knn'"):
        fit_detector("knn", train, labels, outlier_embeddings=train)
    with pytest.raises(ValueError, match="unknown select.unknown_method 'cosine', expected one of: knn, mahalanobis"):
        fit_detector("cosine", train, labels)


def test_the_imagenet_head_flags_what_the_embeddings_alone_take_for_fish():
    """Photos whose embeddings sit among the fish but whose ImageNet head sees no fish: flagged once the head's
    score joins in, each part standardised on validation fish."""
    rng = np.random.default_rng(0)
    train, labels = clusters(0)
    val, _ = clusters(1)
    lookalikes, _ = clusters(2)  # fish-like embeddings, as a dog on a tray might give
    fish_classes = list(IMAGENET_FISH_CLASSES)

    def probs(fish_mass):
        rows = rng.dirichlet(np.ones(1000), len(fish_mass))
        rows[:, fish_classes] *= (fish_mass / rows[:, fish_classes].sum(axis=1))[:, None]
        others = np.setdiff1d(np.arange(1000), fish_classes)
        rows[:, others] *= ((1 - fish_mass) / rows[:, others].sum(axis=1))[:, None]
        return rows

    val_probs, lookalike_probs = probs(rng.uniform(0.3, 0.9, len(val))), probs(np.full(len(lookalikes), 1e-6))
    alone = fit_unknown_detector(UnknownSettings("mahalanobis", 0.5, 1, 0.01), train, labels, val)
    both = fit_unknown_detector(UnknownSettings("mahalanobis", 0.5, 1, 0.01, imagenet_weight=1.0), train, labels, val,
                                val_imagenet=val_probs)
    assert alone.is_unknown(alone.score(lookalikes)).mean() < 0.1
    assert both.is_unknown(both.score(lookalikes, lookalike_probs)).mean() > 0.9
    val_scores = both.score(val, val_probs)
    assert abs(val_scores.mean()) < 1e-4 and both.is_unknown(val_scores).mean() <= 0.01  # both parts centred on val
    assert both.imagenet_weight == 1.0 and list(both.arrays["imagenet_fish"]) == fish_classes
    with pytest.raises(ValueError, match="unknown_imagenet_weight is above 0 but the model gives no ImageNet"):
        fit_unknown_detector(UnknownSettings("mahalanobis", 0.5, 1, 0.01, imagenet_weight=1.0), train, labels, val)
