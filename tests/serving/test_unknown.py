import json

import numpy as np
import pytest

from fish_classifier.serving import unknown
from fish_classifier.serving.unknown import (
    METHODS,
    UnknownDetector,
    features,
    threshold_for_flag_rate,
)


def _clusters(seed: int, per_class: int = 200, dims: int = 32, shift: float = 0.0):
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


def _head():
    kernel = np.zeros((32, 3), np.float32)
    for k in range(3):
        kernel[k * 4 : k * 4 + 4, k] = 2.0
    return kernel, np.zeros(3, np.float32)


@pytest.mark.parametrize("method", METHODS)
def test_each_method_flags_a_shifted_cluster_and_passes_held_out_fish(method):
    train, labels = _clusters(0)
    val, _ = _clusters(1)
    unknown, _ = _clusters(2, shift=2.0)
    kernel, bias = _head()
    detector = UnknownDetector.fit(method, train, labels, k=3, power=0.5, head_kernel=kernel, head_bias=bias)
    detector = detector.with_threshold(threshold_for_flag_rate(detector.score(val), 0.01))
    assert detector.is_unknown(detector.score(val)).mean() <= 0.01
    assert detector.is_unknown(detector.score(unknown)).mean() >= 0.99


def test_the_threshold_flags_exactly_the_requested_share_of_distinct_scores():
    scores = np.random.default_rng(3).normal(size=1000)
    for rate in (0.0, 0.01, 0.05, 0.5):
        threshold = threshold_for_flag_rate(scores, rate)
        assert (scores > threshold).sum() == int(rate * 1000)
    every = threshold_for_flag_rate(scores, 1.0)
    assert np.isfinite(every) and (scores > every).all()  # just below the lowest: a threshold a file can hold


def test_the_threshold_never_flags_more_than_the_share_on_ties():
    scores = np.array([1.0, 2.0, 2.0, 2.0, 3.0])
    threshold = threshold_for_flag_rate(scores, 0.4)  # 2 of 5 allowed; flagging a 2.0 would flag three
    assert threshold == 2.0 and (scores > threshold).sum() == 1


def test_knn_score_is_the_distance_to_the_kth_nearest_unit_vector():
    train = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    detector = UnknownDetector.fit("knn", train, [0, 1, 1], k=2)
    # (1, 0) is at distance 0 from itself; next nearest (1, 1)/sqrt(2): sqrt(2 - 2 cos 45°).
    assert detector.score([[2, 0]])[0] == pytest.approx(np.sqrt(2 - np.sqrt(2)), abs=1e-6)


def test_power_normalisation_keeps_signs_and_gives_unit_rows():
    x = features([[4.0, -9.0, 0.0]], 0.5)
    assert np.allclose(x, np.array([[2.0, -3.0, 0.0]]) / np.sqrt(13))


def test_a_saved_detector_scores_the_same_after_loading(tmp_path):
    train, labels = _clusters(0)
    detector = UnknownDetector.fit("mahalanobis", train, labels, power=0.5).with_threshold(1.5)
    loaded = UnknownDetector.load(detector.save(tmp_path / "unknown.npz"))
    assert (loaded.method, loaded.power, loaded.threshold) == ("mahalanobis", 0.5, 1.5)
    assert np.allclose(loaded.score(train[:20]), detector.score(train[:20]))


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in unknown._blas().info() if lib["user_api"] == "blas"]


def test_scoring_holds_numpys_blas_to_one_thread_and_then_lets_go(monkeypatch):
    # threadpoolctl before 3.5 does not recognise NumPy 2's OpenBLAS (libscipy_openblas): its limit did nothing.
    before = _blas_threads()
    assert before, "threadpoolctl finds no BLAS under NumPy: the one-thread limit would be a no-op"
    seen = []
    real = UnknownDetector._score

    def spy(self, x):
        seen.append(_blas_threads())
        return real(self, x)

    monkeypatch.setattr(UnknownDetector, "_score", spy)
    train, labels = _clusters(0)
    for method in ("knn", "mahalanobis"):
        UnknownDetector.fit(method, train, labels).score(train[:8])
    assert seen == [[1] * len(before)] * 2
    assert _blas_threads() == before


def test_energy_needs_the_head():
    train, labels = _clusters(0)
    with pytest.raises(ValueError, match="the energy score needs the head's kernel and bias"):
        UnknownDetector.fit("energy", train, labels)


def _saved(tmp_path, **changes):
    """A fitted mahalanobis detector's file, with `changes` to its settings or arrays written in."""
    train, labels = _clusters(0)
    detector = UnknownDetector.fit("mahalanobis", train, labels, power=0.5).with_threshold(1.5)
    settings = {"method": "mahalanobis", "k": 1, "power": 0.5, "threshold": 1.5}
    arrays = dict(detector.arrays)
    for key, value in changes.items():
        (arrays if key in arrays else settings)[key] = value
    path = tmp_path / "unknown.npz"
    with open(path, "wb") as f:
        np.savez(f, settings=np.array(json.dumps(settings)), **arrays)
    return path


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), -float("inf"), None, "1.5"])
def test_a_threshold_that_would_switch_the_check_off_is_refused_on_load(tmp_path, threshold):
    with pytest.raises(ValueError) as error:
        UnknownDetector.load(_saved(tmp_path, threshold=threshold))
    assert str(error.value) == f"the unknown-photo threshold must be a finite number, got {threshold!r}"


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_threshold_is_refused_when_set_and_an_unset_one_when_saved(tmp_path, threshold):
    train, labels = _clusters(0)
    fitted = UnknownDetector.fit("knn", train, labels)
    with pytest.raises(ValueError, match="the unknown-photo threshold must be a finite number, got"):
        fitted.with_threshold(threshold)
    with pytest.raises(ValueError, match="must be a finite number, got inf"):
        fitted.save(tmp_path / "unknown.npz")  # fit leaves it unset
    with pytest.raises(ValueError, match="must be a number, got nan"):
        UnknownDetector("knn", fitted.arrays, threshold=float("nan"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"means": np.full((3, 32), np.nan, np.float32)}, "the detector's 'means' holds 96 non-finite values"),
        ({"whitening": np.full((32, 32), np.inf, np.float32)}, "the detector's 'whitening' holds 1024 non-finite"),
        ({"whitening": np.eye(31, dtype=np.float32)}, "arrays do not fit together"),
        ({"means": np.array(["a", "b"])}, "'means' must be a non-empty 2-D array of numbers, got <U1"),
        ({"power": float("nan")}, "the detector's power must be within (0, 1], got nan"),
        ({"k": 0}, "the detector's k must be a whole number >= 1, got 0"),
        ({"method": "cosine"}, "unknown select.unknown_method 'cosine'"),
    ],
    ids=["nan means", "inf whitening", "whitening of another width", "text means", "nan power", "k 0", "method"],
)
def test_a_detector_file_with_a_bad_setting_or_array_is_refused_naming_it(tmp_path, change, message):
    with pytest.raises(ValueError) as error:
        UnknownDetector.load(_saved(tmp_path, **change))
    assert message in str(error.value)


def test_a_file_that_is_no_detector_is_refused_in_one_line(tmp_path):
    (tmp_path / "unknown.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"^not a detector file \(BadZipFile: .*\)$"):
        UnknownDetector.load(tmp_path / "unknown.npz")
    with open(tmp_path / "unknown.npz", "wb") as f:
        np.savez(f, means=np.zeros((3, 4)))
    with pytest.raises(ValueError, match="no settings"):
        UnknownDetector.load(tmp_path / "unknown.npz")


def test_nan_embeddings_are_refused_at_fit_and_a_nan_score_counts_as_unknown():
    train, labels = _clusters(0)
    broken = train.copy()
    broken[3, 5] = np.nan
    with pytest.raises(ValueError, match="the train embeddings hold 1 non-finite values"):
        UnknownDetector.fit("knn", broken, labels)
    with pytest.raises(ValueError, match="1 of the validation scores are not finite"):
        threshold_for_flag_rate([0.1, np.nan, 0.3], 0.0)
    detector = UnknownDetector.fit("knn", train, labels).with_threshold(0.5)
    assert detector.is_unknown([0.2, np.nan, 0.9]).tolist() == [False, True, True]
