"""Unknown-photo detection: does a photo look like the fish the model was trained on, or like nothing it knows?

A softmax always names one of its classes, so a cat gets a species at high confidence. The detector
looks instead at the deploy model's own penultimate embedding (the `pool` output, averaged over a photo
and its mirror for a mirror-averaging model) and scores how far it lies from the training photos'.
Higher scores are stranger. The scores (`select.unknown_method`, `select.unknown_outliers`):

    knn                   distance to the k-th nearest train embedding (Sun et al., ICML 2022)
    mahalanobis           smallest Mahalanobis distance to a class mean, one covariance shared by the
                          classes (Lee et al., NeurIPS 2018), shrunk by Ledoit-Wolf
    relative_mahalanobis  that distance minus the Mahalanobis distance to one Gaussian of photos that are
                          no fish (the outlier pool): a likelihood ratio, fish against not-fish
    energy                minus the log-sum-exp of the head's logits (Liu et al., NeurIPS 2020)

knn and the Mahalanobis scores first power-normalise each embedding (sign(x)|x|^power, `select.unknown_power`)
and scale it to unit length. A power below 1 evens out the few large activations that the fine-tuned
model gives every fish, so that the many small ones (which differ between a fish and a cat) count too.

With `select.unknown_imagenet_weight` above 0 the score also hears the ImageNet head (the deploy model's ImageNet
branch, `fish_classifier.model.imagenet_branch`): minus the log of its probability mass on ImageNet's fish and
crustaceans. Each of the two scores is standardised on the validation fish (centre and scale kept in `standardise`)
and the sum is own + weight x ImageNet's. A photo whose every layer says "a fish", but whose ImageNet head sees a
dog, now counts as strange.

A photo is unknown when its score is above the threshold, which is chosen on validation fish only: no
unknown photo ever tunes it, so its rate on unknowns is out of sample. The detector never changes a label;
it only says when not to believe one.

This module loads and scores; fitting needs scikit-learn and lives in `fish_classifier.evaluation.unknown_fit`.
Scoring needs NumPy and threadpoolctl alone (the serving image has no scikit-learn); the detector is
saved as an `.npz` read with `allow_pickle=False`, and `load` checks every setting and array in it: a NaN
threshold would flag nothing (NaN > score is never true) and switch the check off without a word.
"""

import functools
import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from fish_classifier.serving.inference import EMBEDDING, IMAGENET

RELATIVE = "relative_mahalanobis"  # mahalanobis against the outlier pool (select.unknown_outliers: relative)
METHODS = ("knn", "mahalanobis", RELATIVE, "energy")  # the scores a detector file may hold
_EPS = 1e-12


@dataclass(frozen=True)
class UnknownDetector:
    method: str
    arrays: dict[str, np.ndarray]  # what the method needs: train embeddings, class means, head weights
    k: int = 1
    power: float = 1.0
    threshold: float = float("inf")  # scores above it are unknown; inf until `with_threshold` sets it
    imagenet_weight: float = 0.0  # > 0: the ImageNet head's score joins in (arrays standardise and imagenet_fish)

    def __post_init__(self):
        check_method(self.method)
        _check_arrays(self.method, self.arrays, self.k)
        if math.isnan(self.threshold):
            raise ValueError(f"the unknown-photo threshold must be a number, got {self.threshold}")
        if not (isinstance(self.imagenet_weight, (int, float)) and 0 <= self.imagenet_weight < math.inf):
            raise ValueError(f"the detector's imagenet_weight must be a finite number >= 0, got "
                             f"{self.imagenet_weight!r}")
        if self.imagenet_weight:
            _check_imagenet_arrays(self.arrays)

    @property
    def needs_imagenet(self) -> bool:
        """Whether it scores the ImageNet head's probabilities too (a model exported with an ImageNet branch)."""
        return self.imagenet_weight > 0

    @property
    def embedding_width(self) -> int:
        """The width of the embeddings it was fitted on (and so can score)."""
        if self.method == "knn":
            return int(self.arrays["train"].shape[1])  # (train photos, d)
        if self.method in ("mahalanobis", RELATIVE):
            return int(self.arrays["means"].shape[1])  # (classes, d)
        return int(self.arrays["kernel"].shape[0])  # energy: the head's (d, classes)

    def score(self, embeddings, imagenet=None) -> np.ndarray:
        """One score per embedding row (higher = less like the training fish); `imagenet`: the ImageNet head's
        probabilities (n, 1000) of the same photos, which a detector that `needs_imagenet` requires.

        The products run on BLAS held to one thread: with more, BLAS's worker threads spin for a while after
        each call, taking the cores from the LiteRT interpreter's next photo (a served photo took 64% longer);
        a plain einsum avoids that but is about 10x slower (0.86 s of `predict`'s 20.3 s on 2,840 photos).
        The limit is process-wide while it lasts (app sessions on other threads see it too, harmlessly: serving
        leaves the cores to LiteRT) and costs about 10 us a call."""
        x = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        with _blas().limit(limits=1, user_api="blas"):
            own = self._score(x)
        if not self.needs_imagenet:
            return own
        if imagenet is None:
            raise ValueError("this unknown-photo detector also scores the ImageNet head's probabilities, and none were "
                             "given: serve it with the bundle's model.tflite, which has the ImageNet branch")
        centre, scale, imagenet_centre, imagenet_scale = self.arrays["standardise"].astype(np.float64)
        head = imagenet_score(imagenet, self.arrays["imagenet_fish"])
        if len(head) != len(own):
            raise ValueError(f"{len(own)} embeddings but ImageNet probabilities for {len(head)} photos")
        return ((own - centre) / scale + self.imagenet_weight * (head - imagenet_centre) / imagenet_scale
                ).astype(np.float32)

    def score_outputs(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """`score` of photos from their serving outputs (`inference.outputs_for_files`, a backend's `outputs`): the
        embedding, and the ImageNet probabilities where the model has its ImageNet branch."""
        return self.score(outputs[EMBEDDING], outputs.get(IMAGENET))

    def _score(self, x: np.ndarray) -> np.ndarray:
        if self.method == "knn":
            train = self.arrays["train"]
            # For unit vectors the distance is sqrt(2 - 2 cos): the k-th highest cosine gives the k-th nearest.
            cosine = features(x, self.power) @ train.T
            kth = -np.partition(-cosine, self.k - 1, axis=1)[:, self.k - 1]
            return np.sqrt(np.maximum(2.0 - 2.0 * kth, 0.0)).astype(np.float32)
        if self.method in ("mahalanobis", RELATIVE):
            unit = features(x, self.power)
            white = unit @ self.arrays["whitening"]
            fish = ((white[:, None, :] - self.arrays["means"][None]) ** 2).sum(axis=2).min(axis=1)
            if self.method == "mahalanobis":
                return fish.astype(np.float32)
            # Minus the outlier Gaussian's distance: the log-likelihood ratio up to a constant (the two
            # covariances' log-determinants), which only moves the threshold.
            outlier = ((unit @ self.arrays["outlier_whitening"] - self.arrays["outlier_mean"]) ** 2).sum(axis=1)
            return (fish - outlier).astype(np.float32)
        logits = x @ self.arrays["kernel"] + self.arrays["bias"]
        peak = logits.max(axis=1)
        return (-(peak + np.log(np.exp(logits - peak[:, None]).sum(axis=1)))).astype(np.float32)

    def is_unknown(self, scores) -> np.ndarray:
        # Not `scores > threshold`: a NaN score (a broken embedding) must count as unknown, not as a fish.
        return ~(np.asarray(scores) <= self.threshold)

    def with_threshold(self, threshold: float) -> "UnknownDetector":
        return UnknownDetector(self.method, self.arrays, self.k, self.power, _finite_threshold(threshold),
                               self.imagenet_weight)

    def save(self, path) -> Path:
        path = Path(path)
        _finite_threshold(self.threshold)  # an unset (inf) threshold would flag nothing
        settings = {"method": self.method, "k": self.k, "power": self.power, "threshold": self.threshold,
                    "imagenet_weight": self.imagenet_weight}
        with open(path, "wb") as f:  # a file object, so NumPy adds no .npz of its own to the name
            np.savez(f, settings=np.array(json.dumps(settings)), **self.arrays)
        return path

    @classmethod
    def load(cls, path) -> "UnknownDetector":
        """The detector saved at `path`; ValueError saying what is wrong when the file is no detector this
        code can use (unreadable, a setting or array missing, of the wrong type or shape, or not finite)."""
        try:
            with np.load(path, allow_pickle=False) as data:
                settings = json.loads(str(data["settings"])) if "settings" in data.files else None
                arrays = {name: data[name] for name in data.files if name != "settings"}
        except (ValueError, EOFError, zipfile.BadZipFile) as exc:  # OSError (no such file) passes as it is
            raise ValueError(f"not a detector file ({type(exc).__name__}: {exc})") from exc
        if not isinstance(settings, dict):
            raise ValueError(f"no settings (a JSON object) in the detector file, got {settings!r:.80}")
        method = settings.get("method")
        check_method(method)
        k, power, threshold = (settings.get(key) for key in ("k", "power", "threshold"))
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"the detector's k must be a whole number >= 1, got {k!r}")
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not 0 < power <= 1:
            raise ValueError(f"the detector's power must be within (0, 1], got {power!r}")
        weight = settings.get("imagenet_weight", 0.0)  # files saved before the ImageNet branch have none
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ValueError(f"the detector's imagenet_weight must be a number, got {weight!r}")
        return cls(method, arrays, k, float(power), _finite_threshold(threshold), float(weight))


def imagenet_score(probabilities, fish_classes) -> np.ndarray:
    """Minus the log of each row's ImageNet probability mass on `fish_classes` (floored at 1e-9): 0 for a photo the
    ImageNet head calls a fish outright, about 20 for one it sees nothing of a fish in."""
    probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    if probabilities.ndim != 2 or probabilities.shape[1] <= int(np.max(fish_classes)):
        raise ValueError(f"expected ImageNet probabilities (n, 1000), got shape {probabilities.shape}")
    return -np.log(np.clip(probabilities[:, np.asarray(fish_classes, dtype=np.int64)].sum(axis=1), 1e-9, 1.0))


def features(embeddings, power: float) -> np.ndarray:
    """Each row power-normalised (sign(x)|x|^power) and scaled to unit length."""
    x = np.asarray(embeddings, dtype=np.float32)
    x = np.sign(x) * np.abs(x) ** power
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)


@functools.cache
def _blas() -> ThreadpoolController:
    """The BLAS libraries loaded in this process (found once: it walks the loaded libraries)."""
    return ThreadpoolController()


# The arrays each method scores with: (name, number of dimensions).
_ARRAYS = {"knn": (("train", 2),), "mahalanobis": (("means", 2), ("whitening", 2)),
           RELATIVE: (("means", 2), ("whitening", 2), ("outlier_mean", 1), ("outlier_whitening", 2)),
           "energy": (("kernel", 2), ("bias", 1))}


def _check_arrays(method: str, arrays: dict[str, np.ndarray], k: int) -> None:
    """The arrays `method` needs are there, real numbers, finite, and fit each other."""
    for name, ndim in _ARRAYS[method]:
        if name not in arrays:
            raise ValueError(f"the {method} detector file has no {name!r} array")
        array = arrays[name]
        if array.dtype.kind not in "fiu" or array.ndim != ndim or 0 in array.shape:
            raise ValueError(f"the detector's {name!r} must be a non-empty {ndim}-D array of numbers, "
                             f"got {array.dtype} of shape {array.shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"the detector's {name!r} holds {array.size - np.isfinite(array).sum()} non-finite "
                             "values (NaN or infinite)")
    shapes = {name: arrays[name].shape for name, _ in _ARRAYS[method]}
    fits = {"knn": lambda: k <= shapes["train"][0],
            "mahalanobis": lambda: shapes["whitening"] == (shapes["means"][1],) * 2,
            RELATIVE: lambda: shapes["whitening"] == shapes["outlier_whitening"] == (shapes["means"][1],) * 2
            and shapes["outlier_mean"] == (shapes["means"][1],),
            "energy": lambda: shapes["bias"] == (shapes["kernel"][1],)}[method]()
    if not fits:
        raise ValueError(f"the {method} detector's arrays do not fit together (k {k}): "
                         + ", ".join(f"{name} {shape}" for name, shape in shapes.items()))


def _check_imagenet_arrays(arrays: dict[str, np.ndarray]) -> None:
    """The arrays the ImageNet part of the score needs: four finite standardising numbers, scales above 0, and the
    ImageNet fish classes as whole numbers within 0..999."""
    standardise, fish = arrays.get("standardise"), arrays.get("imagenet_fish")
    if standardise is None or fish is None:
        raise ValueError("a detector with imagenet_weight above 0 needs the arrays 'standardise' and 'imagenet_fish'")
    if standardise.dtype.kind not in "fiu" or standardise.shape != (4,) or not np.isfinite(standardise).all() \
            or not (standardise[[1, 3]] > 0).all():
        raise ValueError("the detector's 'standardise' must be 4 finite numbers (centre, scale > 0, ImageNet centre, "
                         f"ImageNet scale > 0), got {standardise!r:.120}")
    if fish.dtype.kind not in "iu" or fish.ndim != 1 or not len(fish) or fish.min() < 0 or fish.max() > 999:
        raise ValueError(f"the detector's 'imagenet_fish' must be ImageNet class numbers (0..999), got {fish!r:.120}")


def _finite_threshold(threshold) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) \
            or not math.isfinite(threshold):
        raise ValueError(f"the unknown-photo threshold must be a finite number, got {threshold!r}")
    return float(threshold)


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown detector method {method!r}, expected one of: {', '.join(METHODS)}")
    return method
