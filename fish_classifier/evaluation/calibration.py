"""Temperature scaling: one number per model that makes its confidence mean what it says.

Fitted here, on validation; its formula is `serving.bundle_schema.apply_temperature`, which the Predictor applies
with the T the deploy bundle carries.
"""

import numpy as np

from fish_classifier.serving.bundle_schema import TINY as _TINY
from fish_classifier.serving.bundle_schema import apply_temperature

# Wide enough for any model seen in practice (T < 1 sharpens, T > 1 softens);
# the bounds only keep the search away from degenerate zeros and infinities.
TEMPERATURE_BOUNDS = (0.05, 20.0)


def negative_log_likelihood(probabilities, y_true) -> float:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    picked = probabilities[np.arange(len(probabilities)), np.asarray(y_true)]
    return float(-np.log(np.clip(picked, _TINY, 1.0)).mean())


def fit_temperature(probabilities, y_true, prior_sigma: float) -> float:
    """The most probable temperature given the images: it minimises the summed negative log-likelihood
    of the true classes plus a log-normal prior, log T ~ Normal(0, prior_sigma²), centred on T = 1.

    Over many images the likelihood outweighs the prior, and this is the plain maximum-likelihood fit.
    The prior matters when the images hold few errors, as a good model's validation split does. With
    no error at all the likelihood alone only grows as T falls towards 0 and has no minimum; the prior
    stops the sharpening where one more step costs more belief than the images give back.
    """
    from scipy.optimize import minimize_scalar

    if not prior_sigma > 0:
        raise ValueError(f"prior_sigma must be positive, got {prior_sigma}")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true)
    if len(probabilities) == 0:
        raise ValueError("cannot fit a temperature on zero images")
    count = len(probabilities)

    def negative_log_posterior(log_t: float) -> float:
        likelihood = count * negative_log_likelihood(apply_temperature(probabilities, np.exp(log_t)), y_true)
        return likelihood + log_t**2 / (2 * prior_sigma**2)

    # Searching log T keeps the steps even between sharpening and softening.
    result = minimize_scalar(
        negative_log_posterior, bounds=tuple(np.log(TEMPERATURE_BOUNDS)), method="bounded", options={"xatol": 1e-5}
    )
    return float(np.exp(result.x))


def count_errors(probabilities, y_true) -> int:
    """Images whose true class is not strictly the most probable (a tie counts as an error)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    true_scores = probabilities[np.arange(len(probabilities)), np.asarray(y_true)]
    others = probabilities.copy()
    others[np.arange(len(probabilities)), np.asarray(y_true)] = -np.inf
    return int((others.max(axis=1) >= true_scores).sum())
