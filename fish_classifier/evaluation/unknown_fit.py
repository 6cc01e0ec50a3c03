"""Fitting the unknown-photo detector that `fish_classifier.serving.unknown` scores with: on the train photos'
embeddings, with its threshold set on validation fish alone (`select.unknown_*`).

With `select.unknown_outliers: relative` the Mahalanobis detector also fits one Gaussian on the embeddings of
the outlier pool (photos that are no fish, `data.outlier_source`), as it fits the fish: power-normalised unit
embeddings, a mean and a Ledoit-Wolf covariance. Its score is then the distance to the nearest fish class
minus the distance to that Gaussian. The pool only fits; the threshold is still set on validation fish.

With `select.unknown_imagenet_weight` above 0 (and a model exported with its ImageNet branch) the ImageNet head's
score joins in (`with_imagenet`), each of the two standardised on the validation fish before they are summed.
"""

from dataclasses import dataclass

import numpy as np
from sklearn.covariance import LedoitWolf

from fish_classifier.evaluation.thresholds import threshold_at_rate
from fish_classifier.serving.catch_all import IMAGENET_FISH_CLASSES
from fish_classifier.serving.unknown import RELATIVE, UnknownDetector, features, imagenet_score

FIT_METHODS = ("knn", "mahalanobis", "energy")  # select.unknown_method
OUTLIER_USES = ("ignore", "relative", "auto")  # select.unknown_outliers; auto: relative when the pool has photos
_EPS = 1e-12  # the smallest spread a score is divided by (all validation fish scored alike)


class EmptyOutlierPool(ValueError):
    """`relative` asked for, but the outlier pool holds no photo."""

    def __init__(self):
        super().__init__("select.unknown_outliers is relative but the outlier pool (data/outliers) holds no "
                         "photo: point data.outlier_source at photos that are no fish, or set "
                         "select.unknown_outliers to ignore")


@dataclass(frozen=True)
class UnknownSettings:
    """params.yaml's `select.unknown_*` keys: how the detector is fitted and where its threshold goes
    (checked by the select stage's schema, `selection.SelectSettings.unknown`)."""

    method: str
    power: float
    k: int
    val_flag_rate: float
    outliers: str = "ignore"
    imagenet_weight: float = 0.0  # > 0: the ImageNet head's score joins in, with this weight (needs its branch)


def fit_detector(method: str, embeddings, labels, *, k: int = 1, power: float = 1.0, head_kernel=None,
                 head_bias=None, outlier_embeddings=None) -> UnknownDetector:
    """A detector fitted on train photos' embeddings (n, d) and their class indices, its threshold unset;
    `energy` needs the head's weights, and `outlier_embeddings` (the pool's, mahalanobis only) make it relative."""
    if method not in FIT_METHODS:
        raise ValueError(f"unknown select.unknown_method {method!r}, expected one of: {', '.join(FIT_METHODS)}")
    embeddings, labels = _finite(embeddings, "train"), np.asarray(labels)
    if embeddings.ndim != 2 or len(embeddings) != len(labels) or len(embeddings) == 0:
        raise ValueError(f"expected (n, d) embeddings with one label each, got {embeddings.shape} and {labels.shape}")
    if not 0 < power <= 1:
        raise ValueError(f"select.unknown_power must be within (0, 1], got {power}")
    if outlier_embeddings is not None and method != "mahalanobis":
        raise ValueError(f"select.unknown_outliers relative needs select.unknown_method mahalanobis, got {method!r}")
    if method == "knn":
        if not 1 <= k <= len(embeddings):
            raise ValueError(f"select.unknown_k must be within 1..{len(embeddings)} (the train photos), got {k}")
        return UnknownDetector(method, {"train": features(embeddings, power)}, k=k, power=power)
    if method == "energy":
        if head_kernel is None or head_bias is None:
            raise ValueError("the energy score needs the head's kernel and bias")
        return UnknownDetector(method, {"kernel": np.asarray(head_kernel, np.float32),
                                        "bias": np.asarray(head_bias, np.float32)})
    unit = features(embeddings, power).astype(np.float64)
    classes = np.unique(labels)
    means = np.stack([unit[labels == c].mean(axis=0) for c in classes])
    whitening = _whitening(unit - means[np.searchsorted(classes, labels)])
    arrays = {"means": (means @ whitening).astype(np.float32), "whitening": whitening.astype(np.float32)}
    if outlier_embeddings is None:
        return UnknownDetector(method, arrays, power=power)
    outliers = _finite(outlier_embeddings, "outlier pool")
    if len(outliers) == 0:
        raise EmptyOutlierPool()
    pool = features(outliers, power).astype(np.float64)
    centre = pool.mean(axis=0)
    if not np.ptp(pool, axis=0).any():  # one photo, or copies of one: no spread to fit a Gaussian's covariance
        raise ValueError(f"the outlier pool's {len(pool)} photos give one embedding: a Gaussian needs at least two "
                         "different photos that are no fish (data.outlier_source)")
    outlier_whitening = _whitening(pool - centre)
    arrays |= {"outlier_mean": (centre @ outlier_whitening).astype(np.float32),
               "outlier_whitening": outlier_whitening.astype(np.float32)}
    return UnknownDetector(RELATIVE, arrays, power=power)


def fit_unknown_detector(settings: UnknownSettings, train_embeddings, train_labels, val_embeddings,
                         head=None, outlier_embeddings=None, val_imagenet=None) -> UnknownDetector:
    """The detector fitted on the train photos' embeddings (and, when `settings.outliers` is relative, the
    outlier pool's), its threshold set on validation fish alone. `head`: the head's (kernel, bias), for energy.
    `val_imagenet`: the validation fish's ImageNet probabilities, which `settings.imagenet_weight` above 0 needs:
    each score is standardised on them (`with_imagenet`)."""
    kernel, bias = head if head is not None else (None, None)
    if settings.outliers == "relative" and (outlier_embeddings is None or len(outlier_embeddings) == 0):
        raise EmptyOutlierPool()
    detector = fit_detector(settings.method, train_embeddings, train_labels, k=settings.k, power=settings.power,
                            head_kernel=kernel, head_bias=bias,
                            outlier_embeddings=outlier_embeddings if settings.outliers == "relative" else None)
    if settings.imagenet_weight > 0:
        if val_imagenet is None:
            raise ValueError("select.unknown_imagenet_weight is above 0 but the model gives no ImageNet probabilities "
                             "(it was exported without its ImageNet branch)")
        detector = with_imagenet(detector, settings.imagenet_weight, val_embeddings, val_imagenet)
    scores = detector.score(val_embeddings, val_imagenet)
    return detector.with_threshold(validation_threshold(scores, settings.val_flag_rate))


def with_imagenet(detector: UnknownDetector, weight: float, val_embeddings, val_imagenet) -> UnknownDetector:
    """`detector` with the ImageNet head's score added at `weight`, both scores standardised to mean 0 and standard
    deviation 1 on the validation fish, so that the weight says how much the head counts whatever the scores' units."""
    fish = np.array(IMAGENET_FISH_CLASSES, dtype=np.int64)
    own, head = detector.score(val_embeddings), imagenet_score(val_imagenet, fish)
    spread = [max(float(np.std(values)), _EPS) for values in (own, head)]
    standardise = np.array([np.mean(own), spread[0], np.mean(head), spread[1]], dtype=np.float64)
    return UnknownDetector(detector.method, {**detector.arrays, "standardise": standardise, "imagenet_fish": fish},
                           detector.k, detector.power, detector.threshold, weight)


def validation_threshold(val_scores, flag_rate: float) -> float:
    """The lowest unknown-photo threshold flagging (score > threshold) at most `flag_rate` of the validation fish."""
    return threshold_at_rate(val_scores, flag_rate, flagged="above", key="select.unknown_val_flag_rate",
                             what="validation scores")


def _whitening(centred: np.ndarray) -> np.ndarray:
    """W with W W^T = the Ledoit-Wolf precision of `centred` rows: a Mahalanobis distance is then a Euclidean one
    after one (d, d) product. 1280 dimensions from a few thousand photos need the shrinkage to invert at all."""
    fitted = LedoitWolf(assume_centered=True).fit(centred)
    try:
        return np.linalg.cholesky(fitted.precision_)
    except np.linalg.LinAlgError:  # a handful of rows (a tiny outlier pool) can leave it singular: a ridge mends it
        covariance = fitted.covariance_ + 1e-6 * np.trace(fitted.covariance_) / len(centred.T) * np.eye(len(centred.T))
        return np.linalg.cholesky(np.linalg.inv(covariance))


def _finite(embeddings, name: str) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if not np.isfinite(embeddings).all():
        raise ValueError(f"the {name} embeddings hold {np.size(embeddings) - np.isfinite(embeddings).sum()} "
                         "non-finite values (NaN or infinite): the model's outputs are broken")
    return embeddings
