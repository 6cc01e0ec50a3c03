import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.fixtures_models import (
    CLASSES,
    make_bundle,
    tinted_image,
    tinted_pixels,
    trained_tiny_model,
)

from fish_classifier.serving.bundle import BundleError, HeadlineMetrics, file_sha256, read_bundle
from fish_classifier.serving.bundle_schema import apply_temperature
from fish_classifier.serving.bundle_writer import add_examples, update_info
from fish_classifier.serving.predictor import Predictor
from fish_classifier.serving.unknown import UnknownDetector


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle") / "deploy", temperature=1.7, threshold=0.42)


@pytest.fixture(scope="module")
def examples_dir(bundle_dir, tmp_path_factory):
    """The bundle with a row of examples: a large photo of each class, and a PNG with transparency."""
    folder = shutil.copytree(bundle_dir, tmp_path_factory.mktemp("examples") / "deploy")
    photos = [(entry, tinted_image(entry["label"], seed=k, size=400)) for k, entry in enumerate(CLASSES)]
    add_examples(folder, photos, size=64)
    return folder


def test_round_trip_keeps_settings_and_label_order(bundle_dir):
    bundle = read_bundle(bundle_dir)
    assert bundle.classes == CLASSES
    # The fixture's classes are sorted by label, not by display name: the order must survive as written.
    assert [c["display"] for c in bundle.classes] == ["Mullet", "Bass", "Trout"]
    assert (bundle.model_name, bundle.input_size, bundle.temperature, bundle.threshold) == ("tiny", 32, 1.7, 0.42)
    assert bundle.metrics == HeadlineMetrics(accuracy=1.0, macro_f1=1.0)  # the two scores it was given
    assert bundle.metrics.macro_recall is None
    assert bundle.spec.data_hash == "sha256:test"
    assert bundle.spec.created_at.endswith("+00:00")


def test_predictor_on_a_bundle_gives_the_raw_models_labels_and_probabilities(bundle_dir):
    rng = np.random.default_rng(7)
    labels = [c["label"] for c in CLASSES for _ in range(3)]
    pixels = np.stack([tinted_pixels(label, rng) for label in labels])
    raw = trained_tiny_model()(pixels.astype(np.float32), training=False).numpy()

    images = [Image.fromarray(p) for p in pixels]
    predictions = Predictor(bundle_dir).predict(images, top_k=len(CLASSES))

    assert [p.label for p in predictions] == labels
    assert [p.label for p in predictions] == [CLASSES[i]["label"] for i in raw.argmax(axis=1)]
    expected = apply_temperature(raw, 1.7)
    for prediction, row in zip(predictions, expected):
        by_label = {label: probability for label, _, probability in prediction.top_k}
        assert [by_label[c["label"]] for c in CLASSES] == pytest.approx(row.tolist(), abs=1e-5)
        assert prediction.confidence == pytest.approx(row.max(), abs=1e-5)
        assert prediction.display_name == next(c["display"] for c in CLASSES if c["label"] == prediction.label)


def test_missing_bundle_tells_the_user_to_run_the_pipeline(tmp_path):
    with pytest.raises(BundleError, match=r"no deploy bundle at .*nowhere.*run `dvc repro`"):
        read_bundle(tmp_path / "nowhere")


def test_incomplete_or_broken_bundles_name_the_bad_part(tmp_path, bundle_dir):
    broken = tmp_path / "broken"
    shutil.copytree(bundle_dir, broken)
    (broken / "labels.json").unlink()
    with pytest.raises(BundleError, match="labels.json is missing"):
        read_bundle(broken)

    (broken / "labels.json").write_text("{not json")
    with pytest.raises(BundleError, match="cannot read .*labels.json"):
        read_bundle(broken)

    (broken / "labels.json").write_text(json.dumps({"classes": CLASSES[:2]}))
    with pytest.raises(BundleError, match="says 3 classes but labels.json lists 2"):
        read_bundle(broken)


def test_the_unknown_photo_detector_round_trips_and_is_hashed(bundle_dir):
    bundle = read_bundle(bundle_dir)
    assert bundle.unknown_path == Path(bundle_dir) / "unknown.npz"
    assert bundle.spec.files["unknown.npz"] == file_sha256(bundle.unknown_path)
    detector = UnknownDetector.load(bundle.unknown_path)
    assert (detector.method, detector.threshold) == ("mahalanobis", bundle.unknown.threshold)


@pytest.mark.parametrize("name", ["unknown.npz", "labels.json", "model.keras"])
def test_a_changed_file_is_refused_at_load_with_how_to_rebuild(tmp_path, bundle_dir, name):
    tampered = tmp_path / "tampered"
    shutil.copytree(bundle_dir, tampered)
    if name == "labels.json":  # the same classes, reversed: it would serve the wrong species
        (tampered / name).write_text(json.dumps({"classes": CLASSES[::-1]}))
    else:
        with open(tampered / name, "r+b") as f:
            f.seek(100)
            f.write(b"tampered")
    with pytest.raises(BundleError) as error:
        read_bundle(tampered)
    assert str(error.value) == (f"{tampered / name} does not match the sha256 in bundle.json (changed or corrupt "
                                "since the bundle was made); rebuild the bundle with `dvc repro select`")


def test_a_missing_detector_file_is_refused(tmp_path, bundle_dir):
    incomplete = tmp_path / "incomplete"
    shutil.copytree(bundle_dir, incomplete)
    (incomplete / "unknown.npz").unlink()
    with pytest.raises(BundleError, match="is incomplete: unknown.npz is missing; rebuild the bundle with `dvc repro"):
        read_bundle(incomplete)


def test_a_bundle_from_before_formats_is_refused_as_too_old(tmp_path, bundle_dir):
    old = tmp_path / "old"
    shutil.copytree(bundle_dir, old)
    info = json.loads((old / "bundle.json").read_text())
    for key in ("format_version", "required", "files"):
        del info[key]
    (old / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(BundleError) as error:
        read_bundle(old)
    assert str(error.value) == (f"{old / 'bundle.json'} has no format_version: a bundle from before bundle formats, "
                                "which cannot show that it is complete; rebuild the bundle with `dvc repro select`")


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("temperature", 0, "a finite number > 0"),
        ("temperature", -1.5, "a finite number > 0"),
        ("temperature", "warm", "a finite number > 0"),
        ("temperature", None, "a finite number > 0"),
        ("temperature", float("nan"), "a finite number > 0"),
        ("threshold", "high", "a number within [0, 1]"),
        ("threshold", 1.5, "a number within [0, 1]"),
        ("threshold", -0.1, "a number within [0, 1]"),
        ("threshold", True, "a number within [0, 1]"),
        ("top_k", 0, "a whole number >= 1"),
        ("top_k", 2.5, "a whole number >= 1"),
        ("top_k", "five", "a whole number >= 1"),
    ],
)
def test_a_temperature_threshold_or_top_k_the_predictor_cannot_use_is_refused_at_load(tmp_path, bundle_dir, key, value,
                                                                                 rule):
    edited = tmp_path / "edited"
    shutil.copytree(bundle_dir, edited)
    update_info(edited, **{key: value})  # bundle.json is not hashed: its values are checked instead
    with pytest.raises(BundleError) as error:
        read_bundle(edited)
    assert str(error.value) == (f"{edited / 'bundle.json'}: {key} must be {rule}, got {value!r}; "
                                "rebuild the bundle with `dvc repro select`")


def test_examples_round_trip_as_hashed_thumbnails_in_class_order(examples_dir):
    bundle = read_bundle(examples_dir)
    assert [(e.label, e.display) for e in bundle.examples] == [(c["label"], c["display"]) for c in CLASSES]
    assert [e.path for e in bundle.examples] == [Path(examples_dir) / "examples" / f"{k}.jpg" for k in range(3)]
    for example in bundle.examples:
        assert bundle.spec.files[f"examples/{example.path.name}"] == file_sha256(example.path)
        with Image.open(example.path) as thumbnail:
            assert (thumbnail.format, thumbnail.size) == ("JPEG", (64, 64))  # 400 px shrunk to the size asked
    # The bundle's own model names each example's species.
    assert [p.label for p in Predictor(examples_dir).predict([e.path for e in bundle.examples])] == [
        c["label"] for c in CLASSES]


def test_examples_never_grow_a_small_photo_and_replace_an_earlier_row(tmp_path, examples_dir):
    again = shutil.copytree(examples_dir, tmp_path / "again")
    [example] = add_examples(again, [(CLASSES[1], tinted_image(CLASSES[1]["label"], seed=9, size=40))], size=64)
    bundle = read_bundle(again)
    assert example == {"file": "examples/0.jpg", "label": CLASSES[1]["label"], "display": CLASSES[1]["display"]}
    assert [e.label for e in bundle.examples] == [CLASSES[1]["label"]]
    assert sorted(p.name for p in (again / "examples").iterdir()) == ["0.jpg"]
    assert not {"examples/1.jpg", "examples/2.jpg"} & bundle.spec.files.keys()
    with Image.open(bundle.examples[0].path) as thumbnail:
        assert thumbnail.size == (40, 40)


def test_a_bundle_without_examples_loads_with_none(bundle_dir):
    assert "examples" not in json.loads((Path(bundle_dir) / "bundle.json").read_text())
    assert read_bundle(bundle_dir).examples == []


def test_a_changed_example_is_refused_naming_the_file(tmp_path, examples_dir):
    tampered = shutil.copytree(examples_dir, tmp_path / "tampered")
    tinted_image(CLASSES[0]["label"], seed=0, size=64).save(tampered / "examples" / "1.jpg")  # another species
    with pytest.raises(BundleError) as error:
        read_bundle(tampered)
    assert str(error.value) == (f"{tampered / 'examples' / '1.jpg'} does not match the sha256 in bundle.json "
                                "(changed or corrupt since the bundle was made); rebuild the bundle with `dvc repro select`")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda info: info["files"].pop("examples/2.jpg"), "example examples/2.jpg has no hash in files"),
        (lambda info: info["examples"][0].update(label="shark"), "example examples/0.jpg shows 'shark', not one of"),
        (lambda info: info["examples"][0].pop("display"), "each example needs 'file', 'label' and 'display'"),
        (lambda info: info.update(examples="examples/"), "examples must be a list, got 'examples/'"),
    ],
)
def test_an_example_the_bundle_cannot_vouch_for_is_refused(tmp_path, examples_dir, edit, message):
    edited = shutil.copytree(examples_dir, tmp_path / "edited")
    info = json.loads((edited / "bundle.json").read_text())
    edit(info)
    (edited / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(BundleError, match=message):
        read_bundle(edited)


def test_file_sha256_is_the_sha256_of_the_files_bytes(tmp_path):
    data = bytes(range(256)) * 5000  # over a megabyte: more than one read
    (tmp_path / "blob").write_bytes(data)
    assert file_sha256(tmp_path / "blob") == hashlib.sha256(data).hexdigest()
    assert file_sha256(str(tmp_path / "blob")) == file_sha256(tmp_path / "blob")
