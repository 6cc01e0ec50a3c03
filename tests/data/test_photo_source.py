"""fish_classifier/data/photo_source.py: gathering an optional photo set (a folder, a zip or a URL to one), and what
a stage prints about the files it skipped."""

import zipfile

import pytest
from support.synthetic_images import image_bytes

from fish_classifier.data.photo_source import gather_photos, skipped_lines
from fish_classifier.data.unzip import DownloadError, UnpackLimits

LIMITS = UnpackLimits(max_unpacked_mb=10, max_compression_ratio=100)


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


def test_a_url_is_downloaded_and_unpacked_and_choose_picks_the_files_of_a_zip_or_a_folder(tmp_path, local_server):
    base, www = local_server
    files = {"keep/a.jpg": image_bytes(size=(20, 20), seed=1), "keep/b.png": image_bytes(size=(20, 20), seed=2,
                                                                                          format="PNG"),
             "drop/c.jpg": image_bytes(size=(20, 20), seed=3), "notes.txt": b"hello"}
    with zipfile.ZipFile(www / "set.zip", "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    for name, data in files.items():
        (tmp_path / "folder" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "folder" / name).write_bytes(data)
    offered = []

    def choose(names):
        offered.append(sorted(names))
        return [name for name in names if name.startswith("keep/")]

    for source, out in ((f"{base}/set.zip", "from-url"), (str(tmp_path / "folder"), "from-folder")):
        found = gather_photos(source, tmp_path / out / "photos", LIMITS, "data.x_source", "", choose=choose)
        assert [p.relative_to(tmp_path / out / "photos").as_posix() for p in found.photos] == ["keep/a.jpg",
                                                                                              "keep/b.png"]
        assert found.skipped == [] and not (tmp_path / out / "photos" / "drop").exists()
    assert offered == [sorted(files)] * 2  # every file's name, folders not included
    # Nothing chosen: an empty folder, not an error.
    assert gather_photos(f"{base}/set.zip", tmp_path / "none" / "photos", LIMITS, "data.x_source", "",
                         choose=lambda names: []).photos == []
    assert (tmp_path / "none" / "photos").is_dir()


def test_a_url_that_cannot_be_downloaded_names_the_key_to_point_at_a_copy(tmp_path, local_server):
    base, _ = local_server
    with pytest.raises(DownloadError) as error:
        gather_photos(f"{base}/gone.zip", tmp_path / "out" / "photos", LIMITS, "data.x_source", "")
    assert str(error.value) == (
        f"cannot download {base}/gone.zip (the server answered HTTP 404). Download the zip by hand, then set "
        "data.x_source to its path in params.yaml (or run `dvc exp run -S data.x_source=path/to/gone.zip`)")
    assert not (tmp_path / "out" / "photos").exists() and [p.name for p in (tmp_path / "out").iterdir()] == []
