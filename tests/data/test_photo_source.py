"""fish_classifier/data/photo_source.py: gathering an optional photo set, and what a stage prints about the files
it skipped."""

from support.synthetic_images import image_bytes

from fish_classifier.data.photo_source import gather_photos, skipped_lines
from fish_classifier.data.unzip import UnpackLimits


def test_a_folder_is_copied_and_its_unreadable_files_skipped_with_their_reason(tmp_path):
    (tmp_path / "src" / "cats").mkdir(parents=True)
    (tmp_path / "src" / "cats" / "a.jpg").write_bytes(image_bytes(size=(20, 20), seed=1))
    (tmp_path / "src" / "cats" / "b.jpg").write_bytes(b"not a photo")
    (tmp_path / "src" / "notes.txt").write_text("hello")
    found = gather_photos(str(tmp_path / "src"), tmp_path / "out" / "photos",
                          UnpackLimits(max_unpacked_mb=10, max_compression_ratio=100), "data.x_source", "")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in found.photos] == ["photos/cats/a.jpg"]
    reasons = {entry["path"]: entry["reason"] for entry in found.skipped}
    assert set(reasons) == {"photos/cats/b.jpg", "photos/notes.txt"}
    assert reasons["photos/notes.txt"] == "not an image file by its name"


def test_skipped_lines_show_the_first_ten_with_their_reasons_then_how_many_more():
    skipped = [{"path": f"x/{i}.jpg", "reason": "cannot be read"} for i in range(13)]
    lines = skipped_lines(skipped)
    assert lines[0] == "  skipped x/0.jpg: cannot be read" and len(lines) == 11
    assert lines[-1].startswith("  ... and 3 more")
    assert skipped_lines(skipped[:2]) == ["  skipped x/0.jpg: cannot be read", "  skipped x/1.jpg: cannot be read"]
    assert skipped_lines([]) == []
