"""Synthetic embeddings for the unknown-photo detector's tests: tight class clusters, and clusters of unknowns."""

import numpy as np


def clusters(seed: int, per_class: int = 200, dims: int = 32, shift: float = 0.0):
    """Three classes, each a tight cluster around its own centre, in the positive orthant like ReLU features.

    `shift` makes them unknowns: weaker on every class's own directions, stronger on directions no class uses."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((3, dims))
    for k in range(3):
        centres[k, k * 4 : k * 4 + 4] = 3.0
    labels = np.repeat(np.arange(3), per_class)
    points = centres[labels] * (1 - shift / 3) + np.abs(rng.normal(0, 0.3, (len(labels), dims)))
    points[:, 16:] += shift
    return points.astype(np.float32), labels


def head():
    """A head (kernel, bias) that names each cluster's class."""
    kernel = np.zeros((32, 3), np.float32)
    for k in range(3):
        kernel[k * 4 : k * 4 + 4, k] = 2.0
    return kernel, np.zeros(3, np.float32)
