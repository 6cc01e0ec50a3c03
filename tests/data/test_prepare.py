import hashlib
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from PIL import Image
from support import REPO_ROOT
from support.synthetic_images import (
    byte_flips,
    fuzz_originals,
    image_bytes,
    tiff_without_dimensions,
    truncated_jpeg_bytes,
)

from fish_classifier import images
from fish_classifier.data.manifest import MANIFEST_COLUMNS, DatasetError
from fish_classifier.data.leakage import find_leaks
from fish_classifier.data.prepare import fold_in_feedback, prepare_images, prepare_report, summary_lines

LABELS = ["animal fish", "fish sea_food red_mullet"]
ANIMAL_FISH_TRAIN = "train/animal fish"

# Files that must be left out, with the reason the report gives.
BAD_FILES = {
    f"{ANIMAL_FISH_TRAIN}/truncated.jpg": (truncated_jpeg_bytes(), "corrupt or truncated"),
    f"{ANIMAL_FISH_TRAIN}/notes.jpg": (b"these are not pixels\n", "not a readable image"),
    f"{ANIMAL_FISH_TRAIN}/empty.jpg": (b"", "empty (0 bytes)"),
    f"{ANIMAL_FISH_TRAIN}/photo.jpg": (tiff_without_dimensions(), "not one of JPEG, PNG, WEBP, BMP, MPO"),
    "val/readme.txt": (b"a file outside any class folder", "not inside a class folder"),
}
# Files that must be kept, converted to RGB.
AWKWARD_FILES = {
    f"{ANIMAL_FISH_TRAIN}/cmyk.jpg": image_bytes("CMYK", seed=1),
    f"{ANIMAL_FISH_TRAIN}/sixteen.png": image_bytes("I;16", seed=2),
    f"{ANIMAL_FISH_TRAIN}/gray.jpg": image_bytes("L", seed=3),
    f"{ANIMAL_FISH_TRAIN}/palette.png": image_bytes("P", seed=4),
    f"{ANIMAL_FISH_TRAIN}/alpha.png": image_bytes("RGBA", seed=5),
    f"{ANIMAL_FISH_TRAIN}/rotated.jpg": image_bytes(size=(40, 20), seed=6, orientation=6),
}


@pytest.fixture
def prepared(make_image_tree, tmp_path):
    extra = {name: data for name, (data, _) in BAD_FILES.items()} | AWKWARD_FILES
    make_image_tree(tmp_path / "raw", classes=LABELS, counts={"train": 2, "val": 1, "test": 1}, extra=extra)
    return prepare_images(tmp_path / "raw", tmp_path / "prepared", LABELS, hash_size=8, repo_root=tmp_path)


def test_bad_files_are_reported_with_their_reason_and_left_out(prepared):
    reasons = {row["path"]: row["reason"] for row in prepared.skipped}
    assert set(reasons) == {f"raw/{name}" for name in BAD_FILES}
    for name, (_, reason) in BAD_FILES.items():
        assert reason in reasons[f"raw/{name}"]
    kept = set(prepared.manifest["path"])
    assert not any("truncated" in p or "notes" in p or "empty" in p for p in kept)


def test_awkward_images_are_kept_as_rgb_pngs(prepared, tmp_path):
    rows = prepared.manifest.set_index("path")
    for name, data in AWKWARD_FILES.items():
        path = "prepared/" + name.rsplit(".", 1)[0] + ".png"
        assert path in rows.index, path
        with Image.open(tmp_path / path) as image:
            assert (image.format, image.mode) == ("PNG", "RGB")
            assert (rows.loc[path, "width"], rows.loc[path, "height"]) == image.size
        assert rows.loc[path, "sha256"] == hashlib.sha256(data).hexdigest()  # of the original file


def test_exif_rotation_is_applied_in_the_prepared_image(prepared):
    row = prepared.manifest.set_index("path").loc[f"prepared/{ANIMAL_FISH_TRAIN}/rotated.png"]
    assert (row["width"], row["height"]) == (20, 40)


def test_plain_rgb_jpegs_are_byte_copies(prepared, tmp_path):
    original = tmp_path / "raw/train/fish sea_food red_mullet/000.jpg"
    copy = tmp_path / "prepared/train/fish sea_food red_mullet/000.jpg"
    assert copy.read_bytes() == original.read_bytes()


def test_manifest_has_one_row_per_kept_image(prepared):
    manifest = prepared.manifest
    assert list(manifest.columns) == MANIFEST_COLUMNS
    # 2 classes x (2 train + 1 val + 1 test) plain images, plus the 6 awkward train images.
    assert len(manifest) == 8 + len(AWKWARD_FILES)
    assert manifest["split"].value_counts().to_dict() == {"train": 10, "val": 2, "test": 2}
    assert set(manifest["label"]) == set(LABELS)
    assert not manifest["augmented"].any() and (manifest["source"] == "").all()
    assert prepared.hashes.shape == (len(manifest), 64) and prepared.hashes.dtype == bool


def test_same_name_in_two_formats_gets_two_files(make_image_tree, tmp_path):
    # fish.jpg (grayscale) and fish.png (palette) would both become fish.png.
    extra = {
        f"{ANIMAL_FISH_TRAIN}/fish.jpg": image_bytes("L", seed=7),
        f"{ANIMAL_FISH_TRAIN}/fish.png": image_bytes("P", seed=8),
    }
    raw = make_image_tree(classes=LABELS, counts={"train": 1, "val": 1, "test": 1}, extra=extra)
    manifest = prepare_images(raw, tmp_path / "prepared", LABELS, hash_size=8, repo_root=tmp_path).manifest
    fish = sorted(p.rsplit("/", 1)[1] for p in manifest["path"] if p.startswith(f"prepared/{ANIMAL_FISH_TRAIN}/fish"))
    assert len(fish) == 2 and "fish.png" in fish


def test_a_class_with_no_usable_train_image_is_an_error(make_image_tree, tmp_path):
    raw = make_image_tree(classes=["animal fish"], counts={"train": 1, "val": 1, "test": 1})
    (raw / "train" / "fish sea_food shrimp").mkdir()
    (raw / "train" / "fish sea_food shrimp" / "broken.jpg").write_bytes(truncated_jpeg_bytes())
    with pytest.raises(DatasetError, match="train/fish sea_food shrimp has no usable image"):
        prepare_images(raw, tmp_path / "prepared", ["animal fish", "fish sea_food shrimp"], hash_size=8)


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.*")  # Pillow's notes on the corrupt EXIF it was fed
def test_corrupted_files_are_skipped_and_never_stop_the_run(make_image_tree, tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 256 * 256)  # a flipped header may claim a huge image
    extra = {
        f"{ANIMAL_FISH_TRAIN}/{extension}-{i:02d}.{extension}": corrupted
        for extension, original in fuzz_originals().items()
        for i, corrupted in enumerate(byte_flips(original, 50, seed=11))
    }
    raw = make_image_tree(classes=LABELS, counts={"train": 1, "val": 1, "test": 1}, extra=extra)

    prepared = prepare_images(raw, tmp_path / "prepared", LABELS, hash_size=8, repo_root=tmp_path)

    assert len(prepared.manifest) + len(prepared.skipped) == 6 + len(extra)
    assert len(prepared.skipped) > 50
    assert all(row["reason"] and "\n" not in row["reason"] for row in prepared.skipped)


def test_a_file_over_the_size_limit_is_skipped(make_image_tree, tmp_path, monkeypatch):
    raw = make_image_tree(classes=LABELS, counts={"train": 1, "val": 1, "test": 1})
    (raw / ANIMAL_FISH_TRAIN / "huge.bmp").write_bytes(b"BM" + bytes(20_000))
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 20_000)
    prepared = prepare_images(raw, tmp_path / "prepared", LABELS, hash_size=8, repo_root=tmp_path)
    assert prepared.skipped == [
        {"path": f"raw/{ANIMAL_FISH_TRAIN}/huge.bmp", "split": "train", "label": "animal fish",
         "reason": "file is 20,002 bytes, over the 20,000-byte limit"}
    ]  # fmt: skip


def test_classes_missing_from_test_alone_get_a_warning(make_image_tree, tmp_path):
    # Nothing is chosen on test: the other classes' figures stand, and the report says which class has none.
    labels = [*LABELS, "fish sea_food trout"]
    counts = {"train": 1, "val": 1, "test": {"animal fish": 1}}
    raw = make_image_tree(classes=labels, counts=counts)
    prepared = prepare_images(raw, tmp_path / "prepared", labels, hash_size=8)
    assert prepared.warnings == [
        "class 'fish sea_food red_mullet' has no usable image in test/, so no test score covers it",
        "class 'fish sea_food trout' has no usable image in test/, so no test score covers it",
    ]


VAL_USE = "validation chooses the model, its temperature and its thresholds, so every class needs photos there"
TEST_USE = "every reported figure comes from test/, so it needs photos"


@pytest.mark.parametrize(("counts", "message"), [
    ({"train": 1, "val": {}, "test": 1}, f"val/ has no usable photo; {VAL_USE}"),
    ({"train": 1, "val": {"animal fish": 1}, "test": 1},
     f"val/ has no usable photo of 2 of the 3 classes: 'fish sea_food red_mullet', 'fish sea_food trout'; {VAL_USE}"),
    ({"train": 1, "val": 1, "test": {}}, f"test/ has no usable photo; {TEST_USE}"),
], ids=["empty val", "classes missing from val", "empty test"])
def test_a_val_split_short_of_a_class_or_an_empty_test_split_is_refused(make_image_tree, tmp_path, counts, message):
    """An empty val/ once passed: training ran with no validation and evaluate crashed. Validation chooses the model,
    its temperature and its thresholds, on every class; test gives every reported figure."""
    labels = [*LABELS, "fish sea_food trout"]
    raw = make_image_tree(classes=labels, counts=counts)
    for split in ("val", "test"):
        (raw / split).mkdir(exist_ok=True)
    with pytest.raises(DatasetError) as refused:
        prepare_images(raw, tmp_path / "prepared", labels, hash_size=8)
    assert str(refused.value) == message


def test_a_val_split_of_unreadable_files_is_refused_naming_one(make_image_tree, tmp_path):
    raw = make_image_tree(classes=LABELS, counts={"train": 1, "val": {}, "test": 1},
                          extra={"val/animal fish/broken.jpg": truncated_jpeg_bytes()})
    with pytest.raises(DatasetError) as refused:
        prepare_images(raw, tmp_path / "prepared", LABELS, hash_size=8, repo_root=tmp_path)
    assert str(refused.value).startswith(f"val/ has no usable photo; {VAL_USE} (1 of its files left out, e.g. "
                                         "raw/val/animal fish/broken.jpg: image data is corrupt or truncated")


def _run_prepare_stage(workdir):
    (workdir / "params.yaml").write_text(
        "prepare:\n  near_duplicate_distance: 4\n  hash_size: 8\n  display_names: {}\n  duplicate_pairs_shown: 12\n")
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "stages" / "prepare.py")],
        cwd=workdir, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=300,
    )


def test_stage_refuses_an_empty_val_split_in_one_line_and_leaves_no_outputs(make_image_tree, tmp_path):
    data = tmp_path / "data"
    raw = make_image_tree(data / "raw", classes=LABELS, counts={"train": 1, "val": {}, "test": 1})
    (raw / "val").mkdir(exist_ok=True)
    (data / "manifest.csv").write_text("an earlier run's\n")  # nothing a later stage could take for this run's
    (data / "prepared" / "train").mkdir(parents=True)
    result = _run_prepare_stage(tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"prepare failed: val/ has no usable photo; {VAL_USE}"
    assert sorted(p.name for p in data.iterdir()) == ["raw"]


def test_every_class_in_every_split_gives_no_warning(prepared):
    assert prepared.warnings == []


def test_stage_prints_the_warnings_and_records_them_in_the_report(make_image_tree, tmp_path):
    counts = {"train": 1, "val": 1, "test": {"animal fish": 1}}
    make_image_tree(tmp_path / "data" / "raw", classes=LABELS, counts=counts)
    result = _run_prepare_stage(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    warning = "class 'fish sea_food red_mullet' has no usable image in test/, so no test score covers it"
    assert f"warning: {warning}" in result.stdout.splitlines()
    report = json.loads((tmp_path / "data" / "prepare_report.json").read_text())
    assert report["warnings"] == [warning]
    with Image.open(tmp_path / "data" / "near_duplicates.png") as sheet:  # every photo differs: no pair to draw
        assert sheet.text["Description"] == "No near-duplicate pairs across splits"


def _feedback_tree(root, raw):
    """data/feedback/train with a new photo, a byte copy of a test photo, a re-encoded val photo and a broken file;
    returns its manifest (paths relative to `root`, as the feedback stage writes them from the repo root)."""
    folder = root / "data" / "feedback" / "train" / "animal fish"
    folder.mkdir(parents=True)
    with Image.open(raw / "val" / "animal fish" / "000.jpg") as val_photo:
        val_photo.save(folder / "near.jpg", quality=60)  # other bytes, the same picture
    (folder / "new.jpg").write_bytes(image_bytes(seed=500))
    (folder / "copy.jpg").write_bytes((raw / "test" / "fish sea_food red_mullet" / "000.jpg").read_bytes())
    (folder / "broken.jpg").write_bytes(truncated_jpeg_bytes())
    paths = [(folder / name).relative_to(root).as_posix() for name in ("broken.jpg", "copy.jpg", "near.jpg", "new.jpg")]
    rows = [[path, "animal fish", hashlib.sha256((root / path).read_bytes()).hexdigest()] for path in paths]
    rows[1][1] = "fish sea_food red_mullet"  # fed back under the test photo's own species: still dropped
    return pd.DataFrame(rows, columns=["path", "label", "sha256"])


def _prepared_with_feedback(make_image_tree, tmp_path):
    """A dataset of 2 classes (train 2, val 1, test 1 each) prepared, and _feedback_tree's photos folded in."""
    raw = make_image_tree(tmp_path / "raw", classes=LABELS, counts={"train": 2, "val": 1, "test": 1})
    feedback = _feedback_tree(tmp_path, raw)
    prepared = prepare_images(raw, tmp_path / "prepared", LABELS, hash_size=8, repo_root=tmp_path)
    folded = fold_in_feedback(prepared, feedback, tmp_path / "prepared", hash_size=8, max_distance=4,
                              repo_root=tmp_path)
    return feedback, prepared, folded


def test_feedback_photos_join_train_unless_they_duplicate_val_or_test_photos(make_image_tree, tmp_path):
    feedback, prepared, folded = _prepared_with_feedback(make_image_tree, tmp_path)
    manifest = folded.dataset.manifest
    new_sha = hashlib.sha256(image_bytes(seed=500)).hexdigest()
    added = manifest[manifest["origin"] == "feedback"]
    assert added[["path", "split", "label", "sha256"]].values.tolist() == [
        [f"prepared/train/animal fish/feedback-{new_sha[:16]}.jpg", "train", "animal fish", new_sha]]
    assert (tmp_path / added["path"].iloc[0]).read_bytes() == image_bytes(seed=500)
    assert (manifest["origin"] == "dataset").sum() == len(prepared.manifest) and len(manifest) == len(prepared.manifest) + 1
    assert folded.dataset.hashes.shape == (len(manifest), 64)
    report = folded.report
    assert {key: report[key] for key in ("photos", "skipped_files", "dropped_photos", "duplicate_pairs")} == {
        "photos": 1, "skipped_files": 1, "dropped_photos": 2,
        "duplicate_pairs": {"feedback-val": 1, "feedback-test": 1}}
    assert report["pairs"]["feedback-test"] == [{"feedback": feedback["path"][1],
                                                 "test": "prepared/test/fish sea_food red_mullet/000.jpg",
                                                 "distance": 0, "exact": True}]
    near = report["pairs"]["feedback-val"][0]
    assert near["feedback"] == feedback["path"][2] and near["val"] == "prepared/val/animal fish/000.jpg"
    assert not near["exact"] and near["distance"] <= 4
    assert [row["path"] for row in folded.dataset.skipped if row["path"].startswith("data/")] == [feedback["path"][0]]
    assert not list((tmp_path / "prepared" / "train" / "fish sea_food red_mullet").glob("feedback-*"))


def test_stage_folds_in_the_feedback_and_reports_and_draws_what_it_dropped(make_image_tree, tmp_path):
    raw = make_image_tree(tmp_path / "data" / "raw", classes=LABELS, counts={"train": 2, "val": 1, "test": 1})
    feedback = _feedback_tree(tmp_path, raw)
    feedback.to_csv(tmp_path / "data" / "feedback" / "train" / "manifest.csv", index=False)
    result = _run_prepare_stage(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("feedback: 1 of 4 photos join train, 2 dropped as duplicates of val or test photos, 1 unreadable"
            in result.stdout.splitlines())
    report = json.loads((tmp_path / "data" / "prepare_report.json").read_text())
    assert report["feedback"] == {"photos": 1, "skipped_files": 1, "dropped_photos": 2,
                                  "duplicate_pairs": {"feedback-val": 1, "feedback-test": 1}}
    assert report["images"]["train"] == 5 and report["skipped_files"] == 1
    assert report["feedback_dropped_pairs"]["feedback-val"][0]["feedback"] == feedback["path"][2]
    manifest = pd.read_csv(tmp_path / "data" / "manifest.csv", keep_default_na=False)
    assert manifest["origin"].value_counts().to_dict() == {"dataset": 8, "feedback": 1}
    with Image.open(tmp_path / "data" / "near_duplicates.png") as sheet:
        assert sheet.text["Description"].startswith("feedback: Animal fish (near.jpg)   |   val: Animal fish (000.jpg)")
        assert sheet.text["Title"].endswith("listed in prepare_report.json and not drawn: 1")


def test_the_report_puts_the_numbers_first_and_the_summary_says_them(make_image_tree, tmp_path):
    _, _, folded = _prepared_with_feedback(make_image_tree, tmp_path)
    leaks = find_leaks(folded.dataset.manifest, folded.dataset.hashes, 4)
    classes = [{"label": label, "display": label.title()} for label in LABELS]

    report = prepare_report(classes, folded.dataset, leaks, folded.report)

    assert list(report)[:6] == ["classes", "images", "skipped_files", "exact_duplicates", "near_duplicates", "feedback"]
    assert report["classes"] == 2 and report["images"] == {"train": 5, "val": 2, "test": 2}
    assert report["skipped_files"] == 1 and report["skipped"] == folded.dataset.skipped
    assert report["feedback"] == {"photos": 1, "skipped_files": 1, "dropped_photos": 2,
                                  "duplicate_pairs": {"feedback-val": 1, "feedback-test": 1}}
    assert report["feedback_dropped_pairs"] == folded.report["pairs"]
    assert (report["exact_duplicates"], report["near_duplicates"]) == (leaks["exact_duplicates"],
                                                                       leaks["near_duplicates"])
    assert summary_lines(report, feedback_offered=4) == [
        "9 images in 2 classes {'train': 5, 'val': 2, 'test': 2}, 1 skipped",
        f"leakage: exact {leaks['exact_duplicates']}, near {leaks['near_duplicates']}",
        "feedback: 1 of 4 photos join train, 2 dropped as duplicates of val or test photos, 1 unreadable",
    ]
    quiet = summary_lines({**report, "warnings": ["class 'x' has no usable image in test/"]}, feedback_offered=0)
    assert [line.split(":")[0] for line in quiet] == ["9 images in 2 classes {'train'", "leakage", "warning"]
    assert quiet[-1] == "warning: class 'x' has no usable image in test/"
