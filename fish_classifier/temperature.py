"""Temperature scaling's one formula, shared by calibration (which fits T) and the Predictor (which applies it).

The models end in a softmax, so log(p) is the logit vector up to a constant per image,
and softmax(log(p) / T) is exactly temperature scaling of the logits.
"""

import numpy as np

TINY = 1e-12  # the smallest probability taken to a log


def apply_temperature(probabilities, temperature: float) -> np.ndarray:
    """Calibrated probabilities softmax(log(p) / T) for a (n, classes) array of softmax outputs."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), TINY, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)
