"""Temperature scaling: one number per model that makes its confidence mean what it says.

The models end in a softmax, so log(p) is the logit vector up to a constant per
image, and softmax(log(p) / T) is exactly temperature scaling of the logits.
"""

import logging

import numpy as np

log = logging.getLogger(__name__)

# Wide enough for any model seen in practice (T < 1 sharpens, T > 1 softens);
# the bounds only keep the search away from degenerate zeros and infinities.
TEMPERATURE_BOUNDS = (0.05, 20.0)
_TINY = 1e-12


def apply_temperature(probabilities, temperature: float) -> np.ndarray:
    """Calibrated probabilities softmax(log(p) / T) for a (n, classes) array of softmax outputs."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), _TINY, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def negative_log_likelihood(probabilities, y_true) -> float:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    picked = probabilities[np.arange(len(probabilities)), np.asarray(y_true)]
    return float(-np.log(np.clip(picked, _TINY, 1.0)).mean())


def fit_temperature(probabilities, y_true) -> float:
    """The temperature that minimises the negative log-likelihood of the true classes.

    When the top class is right on every image, that likelihood only grows as T falls
    towards 0, so it has no minimum: such images show the model ranks well, not how sharp
    its confidence should be. The temperature is then 1 (confidence left as it is) rather
    than the search's lower bound, which would turn every confidence into 100%.
    """
    from scipy.optimize import minimize_scalar

    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true)
    if len(probabilities) == 0:
        raise ValueError("cannot fit a temperature on zero images")
    if not count_errors(probabilities, y_true):
        log.warning("no errors among the %d calibration images: the temperature stays 1", len(probabilities))
        return 1.0
    # Searching log T keeps the steps even between sharpening and softening.
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(apply_temperature(probabilities, np.exp(log_t)), y_true),
        bounds=tuple(np.log(TEMPERATURE_BOUNDS)),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(np.exp(result.x))


def count_errors(probabilities, y_true) -> int:
    """Images whose true class is not strictly the most probable (a tie counts as an error)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    true_scores = probabilities[np.arange(len(probabilities)), np.asarray(y_true)]
    others = probabilities.copy()
    others[np.arange(len(probabilities)), np.asarray(y_true)] = -np.inf
    return int((others.max(axis=1) >= true_scores).sum())
