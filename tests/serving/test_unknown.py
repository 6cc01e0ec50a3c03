import json

import numpy as np
import pytest

from support.clusters import clusters

from fish_classifier.evaluation.unknown_fit import fit_detector
from fish_classifier.serving import unknown
from fish_classifier.serving.unknown import RELATIVE, UnknownDetector, features


def test_knn_score_is_the_distance_to_the_kth_nearest_unit_vector():
    train = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    detector = fit_detector("knn", train, [0, 1, 1], k=2)
    # (1, 0) is at distance 0 from itself; next nearest (1, 1)/sqrt(2): sqrt(2 - 2 cos 45°).
    assert detector.score([[2, 0]])[0] == pytest.approx(np.sqrt(2 - np.sqrt(2)), abs=1e-6)


def test_power_normalisation_keeps_signs_and_gives_unit_rows():
    x = features([[4.0, -9.0, 0.0]], 0.5)
    assert np.allclose(x, np.array([[2.0, -3.0, 0.0]]) / np.sqrt(13))


def test_a_saved_detector_scores_the_same_after_loading(tmp_path):
    train, labels = clusters(0)
    detector = fit_detector("mahalanobis", train, labels, power=0.5).with_threshold(1.5)
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
    train, labels = clusters(0)
    for method in ("knn", "mahalanobis"):
        fit_detector(method, train, labels).score(train[:8])
    assert seen == [[1] * len(before)] * 2
    assert _blas_threads() == before


def _saved(tmp_path, **changes):
    """A fitted mahalanobis detector's file, with `changes` to its settings or arrays written in."""
    train, labels = clusters(0)
    detector = fit_detector("mahalanobis", train, labels, power=0.5).with_threshold(1.5)
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
    train, labels = clusters(0)
    fitted = fit_detector("knn", train, labels)
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
        ({"method": "cosine"}, "unknown detector method 'cosine', expected one of: knn, mahalanobis, relative_"),
        ({"method": RELATIVE}, "the relative_mahalanobis detector file has no 'outlier_mean' array"),
    ],
    ids=["nan means", "inf whitening", "whitening of another width", "text means", "nan power", "k 0", "method",
         "relative without the pool's arrays"],
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


def test_a_nan_score_counts_as_unknown():
    train, labels = clusters(0)
    detector = fit_detector("knn", train, labels).with_threshold(0.5)
    assert detector.is_unknown([0.2, np.nan, 0.9]).tolist() == [False, True, True]


def test_the_relative_score_is_the_fish_distance_minus_the_outlier_distance(tmp_path):
    train, labels = clusters(0)
    pool, _ = clusters(7, per_class=30, shift=2.0)
    detector = fit_detector("mahalanobis", train, labels, power=0.5, outlier_embeddings=pool).with_threshold(0.0)
    alone = UnknownDetector("mahalanobis", {k: detector.arrays[k] for k in ("means", "whitening")}, power=0.5)
    photos, _ = clusters(8, per_class=5, shift=1.0)
    unit = features(photos, 0.5)
    outlier = ((unit @ detector.arrays["outlier_whitening"] - detector.arrays["outlier_mean"]) ** 2).sum(axis=1)
    assert detector.method == RELATIVE and detector.embedding_width == 32
    assert np.allclose(detector.score(photos), alone.score(photos) - outlier, atol=1e-3)
    loaded = UnknownDetector.load(detector.save(tmp_path / "unknown.npz"))
    assert loaded.method == RELATIVE and np.array_equal(loaded.score(photos), detector.score(photos))


def _imagenet_probs(fish_mass, rng, classes=1000):
    """ImageNet probability rows whose mass on classes 0 and 1 (the fish, in these tests) is `fish_mass`."""
    rows = rng.dirichlet(np.ones(classes - 2), len(fish_mass)) * (1 - np.asarray(fish_mass))[:, None]
    return np.hstack([np.asarray(fish_mass)[:, None] / 2, np.asarray(fish_mass)[:, None] / 2, rows])


def test_with_an_imagenet_weight_the_score_adds_the_standardised_imagenet_score_by_hand(tmp_path):
    train, labels = clusters(0)
    plain = fit_detector("mahalanobis", train, labels, power=0.5)
    arrays = {**plain.arrays, "standardise": np.array([2.0, 4.0, 1.0, 0.5]), "imagenet_fish": np.array([0, 1])}
    detector = UnknownDetector("mahalanobis", arrays, power=0.5, threshold=0.0, imagenet_weight=0.25)
    photos = train[:3]
    probs = _imagenet_probs([0.5, 0.01, 1.0], np.random.default_rng(0))
    own = plain.score(photos)
    head = -np.log([0.5, 0.01, 1.0])
    assert np.allclose(detector.score(photos, probs), (own - 2.0) / 4.0 + 0.25 * (head - 1.0) / 0.5, atol=1e-5)
    assert detector.needs_imagenet and not plain.needs_imagenet
    assert np.allclose(plain.score(photos, probs), own)  # a detector without the weight ignores them
    with pytest.raises(ValueError, match="also scores the ImageNet head's probabilities, and none were given"):
        detector.score(photos)
    loaded = UnknownDetector.load(detector.save(tmp_path / "unknown.npz"))
    assert loaded.imagenet_weight == 0.25 and np.array_equal(loaded.score(photos, probs), detector.score(photos, probs))


def test_the_imagenet_score_floors_a_mass_of_zero_and_refuses_rows_that_are_not_imagenets():
    assert unknown.imagenet_score([[0.0, 0.0, 1.0]], [0, 1]) == pytest.approx([-np.log(1e-9)])
    with pytest.raises(ValueError, match=r"expected ImageNet probabilities \(n, 1000\), got shape \(1, 3\)"):
        unknown.imagenet_score([[0.2, 0.3, 0.5]], [0, 999])


@pytest.mark.parametrize(
    ("arrays", "weight", "message"),
    [
        ({}, 0.5, "needs the arrays 'standardise' and 'imagenet_fish'"),
        ({"standardise": np.array([0.0, 0.0, 0.0, 1.0]), "imagenet_fish": np.array([0])}, 0.5,
         "'standardise' must be 4 finite numbers"),
        ({"standardise": np.array([0.0, 1.0, 0.0, 1.0]), "imagenet_fish": np.array([1000])}, 0.5,
         "'imagenet_fish' must be ImageNet class numbers (0..999)"),
        ({"standardise": np.array([0.0, 1.0, 0.0, 1.0]), "imagenet_fish": np.array([1])}, float("inf"),
         "imagenet_weight must be a finite number >= 0, got inf"),
    ],
    ids=["arrays missing", "scale 0", "class 1000", "infinite weight"],
)
def test_a_detector_with_a_bad_imagenet_part_is_refused_naming_it(tmp_path, arrays, weight, message):
    train, labels = clusters(0)
    plain = fit_detector("mahalanobis", train, labels, power=0.5)
    with pytest.raises(ValueError) as error:
        UnknownDetector("mahalanobis", {**plain.arrays, **arrays}, power=0.5, threshold=0.0, imagenet_weight=weight)
    assert message in str(error.value)


def test_a_detector_file_saved_before_the_imagenet_branch_loads_without_it_and_a_bad_weight_is_refused(tmp_path):
    assert UnknownDetector.load(_saved(tmp_path)).imagenet_weight == 0.0  # its settings have no imagenet_weight
    with pytest.raises(ValueError, match="the detector's imagenet_weight must be a number, got 'high'"):
        UnknownDetector.load(_saved(tmp_path, imagenet_weight="high"))
