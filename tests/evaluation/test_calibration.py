import numpy as np
import pytest

from fish_classifier.evaluation.calibration import (
    TEMPERATURE_BOUNDS,
    count_errors,
    fit_temperature,
    negative_log_likelihood,
)
from fish_classifier.serving.bundle_schema import apply_temperature

SIGMA = 1.0  # params.yaml's evaluate.temperature_prior_sigma


def _softmax(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _miscalibrated_model(true_temperature, n=20_000, classes=5, seed=0):
    """Labels drawn from softmax(z / T) while the model reports softmax(z): a model off by exactly T."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, (n, classes))
    truth = _softmax(logits / true_temperature)
    labels = np.array([rng.choice(classes, p=row) for row in truth])
    return _softmax(logits), labels, logits


@pytest.mark.parametrize("true_temperature", [2.5, 0.6])
def test_fit_recovers_a_known_temperature(true_temperature):
    model_probs, labels, _ = _miscalibrated_model(true_temperature)
    assert fit_temperature(model_probs, labels, SIGMA) == pytest.approx(true_temperature, rel=0.05)


def test_fitted_temperature_lowers_the_negative_log_likelihood():
    model_probs, labels, _ = _miscalibrated_model(2.5)
    fitted = apply_temperature(model_probs, fit_temperature(model_probs, labels, SIGMA))
    assert negative_log_likelihood(fitted, labels) < negative_log_likelihood(model_probs, labels) - 0.05


def test_rejects_fitting_on_no_images():
    with pytest.raises(ValueError, match="zero images"):
        fit_temperature(np.empty((0, 3)), np.empty(0, dtype=int), SIGMA)


def _negative_log_posterior(probs, labels, temperature, prior_sigma=SIGMA):
    return len(probs) * negative_log_likelihood(apply_temperature(probs, temperature), labels) + np.log(
        temperature
    ) ** 2 / (2 * prior_sigma**2)


def test_no_errors_the_prior_stops_the_sharpening_inside_the_bounds():
    # Every top class right: the likelihood alone keeps rising as T -> 0. The prior on log T gives a minimum.
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    temperature = fit_temperature(probs, [0, 1, 2], SIGMA)
    assert TEMPERATURE_BOUNDS[0] * 1.01 < temperature < 1.0
    # It is that minimum: a step either way raises likelihood plus prior.
    best = _negative_log_posterior(probs, [0, 1, 2], temperature)
    assert best < _negative_log_posterior(probs, [0, 1, 2], temperature * 1.02)
    assert best < _negative_log_posterior(probs, [0, 1, 2], temperature / 1.02)


def test_more_error_free_images_outweigh_the_prior_more():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    few = fit_temperature(probs, [0, 1, 2], SIGMA)
    many = fit_temperature(np.tile(probs, (100, 1)), [0, 1, 2] * 100, SIGMA)
    assert many < few
    # A tighter prior holds T nearer 1.
    assert few < fit_temperature(probs, [0, 1, 2], prior_sigma=0.2) < 1.0


def test_rejects_a_non_positive_prior_width():
    with pytest.raises(ValueError, match="prior_sigma must be positive, got 0"):
        fit_temperature(np.array([[0.6, 0.4]]), [0], prior_sigma=0)


def test_one_error_is_enough_for_a_temperature_inside_the_bounds():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    temperature = fit_temperature(probs, [0, 1, 2, 1], SIGMA)
    assert 0.06 < temperature < 19.0
    # The data move it off the prior's centre: it beats T = 1 on the likelihood.
    assert negative_log_likelihood(apply_temperature(probs, temperature), [0, 1, 2, 1]) < negative_log_likelihood(
        probs, [0, 1, 2, 1]
    )


def test_count_errors_counts_wrong_and_tied_top_classes():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.45, 0.45, 0.1]])
    assert count_errors(probs, [0, 0, 1]) == 2  # the second is wrong, the third a tie
    assert count_errors(probs[:2], [0, 1]) == 0
