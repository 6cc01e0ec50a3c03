"""bundle.json is read once into a checked `BundleInfo`: every path stays inside the bundle folder, every value
has the type and range serving needs, its format version is one this code reads, and each problem is a
one-line BundleError naming the file, never a traceback. Its temperature means `apply_temperature`."""

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax
from support.fixtures_models import CLASSES, make_bundle, tinted_image

from fish_classifier.serving.bundle import BundleError, file_sha256, read_bundle
from fish_classifier.serving.bundle_writer import add_catch_all_doubt, add_examples, add_file, update_info
from fish_classifier.serving.catch_all import CatchAllDoubt
from fish_classifier.serving.bundle_schema import FORMAT_VERSION, HeadlineMetrics, apply_temperature
from fish_classifier.serving.predictor import Predictor

REBUILD = "rebuild the bundle with `dvc repro select`"


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    folder = make_bundle(tmp_path_factory.mktemp("schema") / "deploy")
    add_examples(folder, [(CLASSES[0], tinted_image(CLASSES[0]["label"], seed=1))], size=32)
    return Path(folder)


@pytest.fixture
def edited(tmp_path, bundle_dir):
    return shutil.copytree(bundle_dir, tmp_path / "deploy")


def _info(folder) -> dict:
    return json.loads((folder / "bundle.json").read_text())


def _refused(folder) -> str:
    """The one-line message both read_bundle and the Predictor give."""
    with pytest.raises(BundleError) as error:
        read_bundle(folder)
    with pytest.raises(BundleError) as served:
        Predictor(folder)
    assert str(served.value) == str(error.value) and "\n" not in str(error.value)
    return str(error.value)


def test_the_bundle_says_its_format_and_the_files_it_must_have(bundle_dir):
    bundle = read_bundle(bundle_dir)
    assert bundle.spec.format_version == FORMAT_VERSION == 2
    assert bundle.spec.required == ("labels.json",)  # make_bundle promises no export
    assert bundle.spec.unknown.method == "mahalanobis" and np.isfinite(bundle.spec.unknown.threshold)
    assert bundle.spec.catch_all_doubt is None  # none written: no catch-all answer is doubted


def test_a_format_1_bundle_from_before_the_catch_all_doubt_still_serves(edited):
    update_info(edited, format_version=1)
    assert Predictor(edited).bundle.spec.format_version == 1 and Predictor(edited).doubt is None


def test_the_catch_all_doubt_is_read_back_and_a_broken_one_is_refused_naming_it(edited):
    doubt = CatchAllDoubt((CLASSES[0]["label"],), (1, 2), threshold=0.05, rate=0.25)
    add_catch_all_doubt(edited, doubt)
    assert read_bundle(edited).spec.catch_all_doubt == doubt
    add_catch_all_doubt(edited, replace(doubt, labels=("animal fish",)))
    assert _refused(edited) == (f"{edited / 'bundle.json'}: catch_all_doubt names ['animal fish'], not among the "
                                f"bundle's classes; {REBUILD}")
    update_info(edited, catch_all_doubt={**doubt.to_json(), "threshold": 2})
    assert _refused(edited) == (f"{edited / 'bundle.json'}: the catch-all doubt's threshold must be a number from 0 "
                                f"to 1, got 2; {REBUILD}")
    # The Keras backend has no ImageNet branch to read.
    add_catch_all_doubt(edited, doubt)
    with pytest.raises(BundleError, match="catch_all_doubt reads the ImageNet branch, which only model.tflite has, "
                                          "and the keras backend runs no such branch"):
        Predictor(edited, backend="keras")


PASSWD = "../../../../etc/passwd"


def _point_example_at_passwd(info, *, hashed: bool) -> None:
    info["examples"][0]["file"] = PASSWD
    if hashed:  # with the right hash: the hash vouches for the bytes, not for where they are
        info["files"][PASSWD] = file_sha256("/etc/passwd")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda info: _point_example_at_passwd(info, hashed=True),
         f"files: {PASSWD!r} is not a plain relative path inside the bundle"),
        (lambda info: _point_example_at_passwd(info, hashed=False),
         f"examples: {PASSWD!r} is not a plain relative path inside the bundle"),
        (lambda info: info["files"].update({"/etc/passwd": file_sha256("/etc/passwd")}),
         "files: '/etc/passwd' is not a plain relative path inside the bundle"),
        (lambda info: info["files"].update({"examples/../../x": "0" * 64}),
         "files: 'examples/../../x' is not a plain relative path inside the bundle"),
        (lambda info: info["required"].append("../unknown.npz"),
         "required: '../unknown.npz' is not a plain relative path inside the bundle"),
        (lambda info: info["files"].update({"labels.json": "not a hash"}),
         "files: the sha256 of labels.json must be 64 hex digits, got 'not a hash'"),
    ],
    ids=["example .. hashed", "example ..", "files absolute", "files ..", "required ..", "hash"],
)
def test_a_path_leading_out_of_the_bundle_is_refused_even_with_the_right_hash(edited, edit, problem):
    info = _info(edited)
    edit(info)
    (edited / "bundle.json").write_text(json.dumps(info))
    assert _refused(edited) == f"{edited / 'bundle.json'}: {problem}; {REBUILD}"


def test_a_symlink_leading_out_of_the_bundle_is_refused(edited, tmp_path):
    outside = tmp_path / "outside.jpg"
    shutil.copyfile(edited / "examples" / "0.jpg", outside)  # the same bytes: the hash matches
    (edited / "examples" / "0.jpg").unlink()
    os.symlink(outside, edited / "examples" / "0.jpg")
    assert f"files: 'examples/0.jpg' leads outside the bundle (to {outside})" in _refused(edited)


def test_a_symlink_inside_the_bundle_is_followed(edited):
    shutil.move(edited / "examples" / "0.jpg", edited / "thumb.jpg")
    os.symlink("../thumb.jpg", edited / "examples" / "0.jpg")
    assert read_bundle(edited).examples[0].path.read_bytes() == (edited / "thumb.jpg").read_bytes()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"null", "bundle.json: expected a JSON object, got null; " + REBUILD),
        (b"[1, 2]", "bundle.json: expected a JSON object, got a list ([1, 2]); " + REBUILD),
        (b"\xff\xfe{}", "cannot read {path} (not UTF-8 text: invalid start byte at byte 0); run `dvc repro`"),
        (b"[" * 10_000 + b"]" * 10_000, "cannot read {path} (JSON nested too deeply); run `dvc repro`"),
        (b'{"format_version": 1', "cannot read {path} (Expecting ',' delimiter"),
    ],
    ids=["null", "a list", "not UTF-8", "10,000 nested lists", "cut short"],
)
def test_a_bundle_json_that_is_no_object_is_refused_in_one_line(edited, text, problem):
    (edited / "bundle.json").write_bytes(text)
    assert problem.format(path=edited / "bundle.json") in _refused(edited)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("input_size", "abc", "input_size must be a whole number >= 1, got 'abc'"),
        ("input_size", 31.5, "input_size must be a whole number >= 1, got 31.5"),
        ("num_classes", None, "num_classes must be a whole number >= 1, got None"),
        ("temperature", "x", "temperature must be a finite number > 0, got 'x'"),
        ("temperature", float("inf"), "temperature must be a finite number > 0, got inf"),
        ("threshold", float("nan"), "threshold must be a number within [0, 1], got nan"),
        ("model", ["tiny"], "model must be a non-empty string, got ['tiny']"),
        ("files", ["labels.json"], "files must be an object of file name -> sha256, got a list (['labels.json'])"),
        ("required", "labels.json", "required must be a list of file names, got 'labels.json'"),
        ("metrics", 0.9, "metrics must be an object, got a float (0.9)"),
        ("metrics", {"accuracy": 1.5}, "metrics.accuracy must be a score within [0, 1], got 1.5"),
        ("metrics", {"macro_f1": None}, "metrics.macro_f1 must be a score within [0, 1], got None"),
        ("data_hash", 7, "data_hash must be a non-empty string, got 7"),
        ("examples", {"file": "examples/0.jpg"}, "examples must be a list, got {'file': 'examples/0.jpg'}"),
        ("unknown", "mahalanobis", "unknown must be an object, got a str ('mahalanobis')"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_it(edited, key, value, problem):
    update_info(edited, **{key: value})  # json writes NaN and Infinity, which json reads back
    assert _refused(edited) == f"{edited / 'bundle.json'}: {problem}; {REBUILD}"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda unknown: unknown.update(threshold=float("nan")), "unknown.threshold must be a finite number, got nan"),
        (lambda unknown: unknown.update(threshold=None), "unknown.threshold must be a finite number, got None"),
        (lambda unknown: unknown.update(file="../unknown.npz"),
         "unknown.file must be 'unknown.npz', got '../unknown.npz'"),
        (lambda unknown: unknown.update(figures={"flagged": {"not-fish": "all"}}),
         "unknown.figures.flagged['not-fish'] must be a share within [0, 1], got 'all'"),
    ],
)
def test_the_detectors_entry_is_checked(edited, edit, problem):
    info = _info(edited)
    edit(info["unknown"])
    update_info(edited, unknown=info["unknown"])
    assert _refused(edited) == f"{edited / 'bundle.json'}: {problem}; {REBUILD}"


def test_metrics_the_detectors_figures_and_versions_are_attributes(edited):
    info = _info(edited)
    info["unknown"]["figures"] = {"flagged": {"test fish": 0.005, "unknown": 0.83}, "auroc": 0.99}
    update_info(edited, unknown=info["unknown"], data_hash="sha256:abc",
                metrics={"accuracy": 0.9, "macro_f1": 0.8, "macro_recall": 0.7, "val": {"macro_f1": 0.95}})
    bundle = read_bundle(edited)
    assert bundle.metrics == HeadlineMetrics(accuracy=0.9, macro_f1=0.8, macro_recall=0.7)  # val stays in the file
    assert bundle.unknown.flagged == {"test fish": 0.005, "unknown": 0.83}
    assert (bundle.spec.data_hash, bundle.spec.format_version) == ("sha256:abc", FORMAT_VERSION)


def test_a_bundle_without_metrics_figures_or_versions_reads_them_as_none(edited):
    info = _info(edited)
    for key in ("metrics", "data_hash", "created_at"):
        info.pop(key, None)
    info["unknown"].pop("figures", None)
    (edited / "bundle.json").write_text(json.dumps(info))  # bundle.json hashes the others, never itself
    bundle = read_bundle(edited)
    assert bundle.metrics == HeadlineMetrics() and bundle.metrics.accuracy is None
    assert bundle.unknown.flagged == {} and bundle.spec.data_hash is None and bundle.spec.created_at is None


def test_a_detector_file_without_its_entry_is_refused_not_skipped(edited):
    info = _info(edited)
    del info["unknown"]  # the Predictor would serve without the check
    (edited / "bundle.json").write_text(json.dumps(info))
    assert "it has unknown.npz but no unknown entry to say how to use it" in _refused(edited)


def test_a_nan_threshold_in_the_detector_file_is_refused_naming_the_file(edited):
    with np.load(edited / "unknown.npz") as data:
        arrays = {name: data[name] for name in data.files}
    settings = {**json.loads(str(arrays.pop("settings"))), "threshold": float("nan")}
    with open(edited / "unknown.npz", "wb") as f:
        np.savez(f, settings=np.array(json.dumps(settings)), **arrays)
    add_file(edited, "unknown.npz")  # a careless rebuild: the hash recorded again
    with pytest.raises(BundleError) as error:
        Predictor(edited)
    assert str(error.value) == (f"{edited / 'unknown.npz'} cannot be read (the unknown-photo threshold must be a "
                                f"finite number, got nan); {REBUILD}")


@pytest.mark.parametrize(
    ("version", "problem"),
    [
        (3, "bundle format 3 is newer than this fish-classifier reads (2); upgrade fish-classifier to serve it, "
            "or rebuild it with this version (`dvc repro select`)"),
        ("1", "format_version must be a whole number >= 1, got '1'; " + REBUILD),
        (0, "format_version must be a whole number >= 1, got 0; " + REBUILD),
    ],
)
def test_a_format_version_this_code_cannot_read_is_refused(edited, version, problem):
    update_info(edited, format_version=version)
    assert _refused(edited) == f"{edited / 'bundle.json'}: {problem}"


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ({"classes": "red green"}, "expected a non-empty list of classes"),
        (None, "expected a non-empty list of classes"),
        ({"classes": [{"label": 1, "display": "Mullet"}]}, "each class needs 'label' and 'display' as strings"),
        ({"classes": [{"label": "red", "display": "Red"}] * 3}, "labels must be distinct, got ['red', 'red', 'red']"),
    ],
)
def test_labels_that_are_not_a_list_of_distinct_classes_are_refused(edited, labels, problem):
    (edited / "labels.json").write_text(json.dumps(labels))
    add_file(edited, "labels.json")
    assert _refused(edited).startswith(f"{edited / 'labels.json'}: {problem}")


def test_temperature_on_log_probabilities_equals_temperature_on_logits():
    logits = np.random.default_rng(0).normal(0.0, 3.0, (50, 5))
    np.testing.assert_allclose(apply_temperature(softmax(logits, axis=1), 3.0), softmax(logits / 3.0, axis=1),
                               atol=1e-9)
    np.testing.assert_allclose(apply_temperature(softmax(logits, axis=1), 1.0), softmax(logits, axis=1), atol=1e-9)


def test_temperature_keeps_the_top_class_and_rows_summing_to_one():
    probs = np.array([[0.7, 0.2, 0.1], [0.05, 0.15, 0.8]])
    calibrated = apply_temperature(probs, 2.0)
    assert calibrated.argmax(axis=1).tolist() == [0, 2]
    assert calibrated.sum(axis=1) == pytest.approx([1.0, 1.0])
    assert calibrated[0, 0] < 0.7  # T > 1 softens


def test_rejects_a_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature must be positive, got 0"):
        apply_temperature(np.array([[0.5, 0.5]]), 0)
