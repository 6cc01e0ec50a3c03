"""The export: one folder per label of <sha256>.jpg files, built beside the target and renamed into place."""

import pytest

from fish_classifier.feedback.export import write_export
from fish_classifier.feedback.schema import FeedbackError, StoreUnavailable

A, B, C = "a" * 64, "b" * 64, "c" * 64


def jpeg_of(sha256: str) -> bytes:
    return b"\xff\xd8" + sha256.encode()


def test_each_photo_goes_under_its_latest_label_and_a_relabelled_one_is_reported(tmp_path):
    out = tmp_path / "exported" / "feedback"
    report = write_export(out, {A: ["animal fish"], B: ["not-fish"], C: ["animal fish", "animal fish bass"]}, jpeg_of)

    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [f"animal fish bass/{C}.jpg", f"animal fish/{A}.jpg", f"not-fish/{B}.jpg"]
    assert (out / "not-fish" / f"{B}.jpg").read_bytes() == jpeg_of(B)
    assert report == {"records": 4, "photos": 3, "labels": {"animal fish": 1, "animal fish bass": 1, "not-fish": 1},
                      "relabelled": [{"sha256": C, "labels": ["animal fish", "animal fish bass"],
                                      "kept": "animal fish bass"}]}
    assert [p.name for p in out.parent.iterdir()] == ["feedback"]  # no scratch folder left beside it


def test_an_earlier_export_is_replaced_and_any_other_folder_refused(tmp_path):
    out = tmp_path / "feedback"
    write_export(out, {A: ["animal fish"], B: ["not-fish"]}, jpeg_of)
    assert write_export(out, {B: ["not-fish"]}, jpeg_of)["photos"] == 1
    assert not (out / "animal fish").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["feedback"]
    assert write_export(tmp_path / "empty", {}, jpeg_of) == {"records": 0, "photos": 0, "labels": {}, "relabelled": []}

    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(FeedbackError, match="notes exists and is not an earlier feedback export; give a new or empty"):
        write_export(tmp_path / "notes", {A: ["animal fish"]}, jpeg_of)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


@pytest.mark.parametrize("label", ["..", "a/b", "a\\b", ""])
def test_a_label_that_cannot_be_a_folder_name_is_refused(tmp_path, label):
    with pytest.raises(FeedbackError) as refused:
        write_export(tmp_path / "out", {A: [label]}, jpeg_of)
    assert str(refused.value) == f"label {label!r} cannot be a folder name; relabel or reject its records"
    assert not (tmp_path / "out").exists()


def test_a_failed_write_leaves_no_half_export(tmp_path):
    def unreadable(sha256: str) -> bytes:
        raise OSError(28, "No space left on device")

    with pytest.raises(StoreUnavailable, match="cannot write the export to .*out: No space left on device"):
        write_export(tmp_path / "out", {A: ["animal fish"]}, unreadable)
    assert list(tmp_path.iterdir()) == []
