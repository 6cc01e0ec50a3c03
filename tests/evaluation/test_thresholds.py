import numpy as np
import pytest

from fish_classifier.evaluation.thresholds import choose_threshold, threshold_at_rate


def test_threshold_is_the_highest_that_flags_at_most_the_allowed_share():
    confidences = np.arange(1, 101) / 100  # 0.01 .. 1.00
    # 1% of 100 may be flagged: a threshold of 0.02 flags only 0.01; anything above 0.02 also flags 0.02.
    assert choose_threshold(confidences, rule="val_flag_rate", val_flag_rate=0.01, fixed_threshold=0.5) == 0.02
    assert choose_threshold(confidences, rule="val_flag_rate", val_flag_rate=0.05, fixed_threshold=0.5) == 0.06
    assert choose_threshold(confidences, rule="val_flag_rate", val_flag_rate=0.0, fixed_threshold=0.5) == 0.01


@pytest.mark.parametrize("seed", range(5))
def test_threshold_rule_holds_on_random_confidences_with_ties(seed):
    rng = np.random.default_rng(seed)
    confidences = rng.choice([0.3, 0.5, 0.5, 0.7, 0.9, 0.99], size=37)
    threshold = choose_threshold(confidences, rule="val_flag_rate", val_flag_rate=0.1, fixed_threshold=0.5)
    assert np.mean(confidences < threshold) <= 0.1
    # Any higher threshold also flags the images at exactly this confidence: too many.
    assert np.mean(confidences <= threshold) > 0.1


def test_fixed_rule_and_bad_rules():
    assert choose_threshold([0.9], rule="fixed", val_flag_rate=0.01, fixed_threshold=0.4) == 0.4
    assert choose_threshold([0.9, 0.8], rule="val_flag_rate", val_flag_rate=1.0, fixed_threshold=0.4) == 1.0
    with pytest.raises(ValueError, match="unknown select.threshold_rule 'top'.*val_flag_rate, fixed"):
        choose_threshold([0.9], rule="top", val_flag_rate=0.01, fixed_threshold=0.4)
    with pytest.raises(ValueError, match="val_flag_rate must be within"):
        choose_threshold([0.9], rule="val_flag_rate", val_flag_rate=1.5, fixed_threshold=0.4)


def test_a_score_threshold_flags_exactly_the_requested_share_of_distinct_scores():
    scores = np.random.default_rng(3).normal(size=1000)
    for rate in (0.0, 0.01, 0.05, 0.5):
        threshold = threshold_at_rate(scores, rate, flagged="above", key="k", what="scores")
        assert (scores > threshold).sum() == int(rate * 1000)
    every = threshold_at_rate(scores, 1.0, flagged="above", key="k", what="scores")
    assert np.isfinite(every) and (scores > every).all()  # just below the lowest: a threshold a file can hold


def test_a_score_threshold_never_flags_more_than_the_share_on_ties():
    scores = np.array([1.0, 2.0, 2.0, 2.0, 3.0])
    threshold = threshold_at_rate(scores, 0.4, flagged="above", key="k", what="scores")  # 2 of 5 allowed
    assert threshold == 2.0 and (scores > threshold).sum() == 1  # flagging a 2.0 would flag three


@pytest.mark.parametrize("seed", range(5))
def test_both_directions_are_one_rule_mirrored(seed):
    values = np.random.default_rng(seed).choice([0.3, 0.5, 0.5, 0.7, 0.9, 0.99], size=37)
    for rate in (0.0, 0.1, 0.3, 1.0):
        below = threshold_at_rate(values, rate, flagged="below", key="k", what="v")
        assert threshold_at_rate(-values, rate, flagged="above", key="k", what="v") == -below
        assert np.mean(values < below) <= rate


def test_no_values_non_finite_values_and_a_rate_outside_zero_to_one_are_refused_naming_them():
    with pytest.raises(ValueError, match="^no validation scores to set the threshold from$"):
        threshold_at_rate([], 0.1, flagged="above", key="k", what="validation scores")
    with pytest.raises(ValueError, match="^1 of the validation scores are not finite"):
        threshold_at_rate([0.1, np.nan, 0.3], 0.0, flagged="above", key="k", what="validation scores")
    with pytest.raises(ValueError, match=r"^select.unknown_val_flag_rate must be within \[0, 1\], got -0.1$"):
        threshold_at_rate([0.1], -0.1, flagged="above", key="select.unknown_val_flag_rate", what="scores")
