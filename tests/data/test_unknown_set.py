import zipfile

import pandas as pd
import pytest
from support.app_bundles import text_photo
from support.fixtures_models import tinted_image

from fish_classifier.data.unzip import DownloadError, UnpackLimits
from fish_classifier.data.unknown_set import UnknownSet, collect_unknown_set

LIMITS = UnpackLimits(max_unpacked_mb=100, max_compression_ratio=100)


def _source_folder(root):
    (root / "not-fish" / "deeper").mkdir(parents=True)
    (root / "fish-elsewhere").mkdir()
    text_photo("cat").save(root / "not-fish" / "cat.jpg")
    text_photo("car").save(root / "not-fish" / "deeper" / "car.png")
    text_photo("loose").save(root / "loose.jpg")  # in neither folder: counted as not-fish
    tinted_image("fish sea_food red_tinted", seed=1).save(root / "fish-elsewhere" / "bass.jpg")
    (root / "not-fish" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (root / "notes.txt").write_text("not a photo")
    return root


def _expected(out):
    return [(f"{out.as_posix()}/photos/{path}", group) for path, group in [
        ("fish-elsewhere/bass.jpg", "fish-elsewhere"), ("loose.jpg", "not-fish"),
        ("not-fish/cat.jpg", "not-fish"), ("not-fish/deeper/car.png", "not-fish")]]


def test_a_folder_source_is_copied_and_grouped_and_a_bad_file_skipped_with_its_reason(tmp_path):
    out = tmp_path / "data" / "unknown"
    found = collect_unknown_set(str(_source_folder(tmp_path / "src")), out, LIMITS)
    assert list(found.manifest.itertuples(index=False, name=None)) == _expected(out)
    reasons = {entry["path"]: entry["reason"] for entry in found.skipped}
    assert reasons["photos/notes.txt"] == "not an image file by its name"
    assert reasons["photos/not-fish/broken.jpg"].startswith("not a readable image")


def test_a_zip_source_gives_the_same_set(tmp_path):
    source = _source_folder(tmp_path / "src")
    archive = tmp_path / "unknown.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(source).as_posix())
    out = tmp_path / "unknown"
    assert list(collect_unknown_set(str(archive), out, LIMITS).manifest.itertuples(index=False, name=None)) \
        == _expected(out)


def test_an_empty_source_gives_an_empty_set(tmp_path):
    found = collect_unknown_set("", tmp_path / "unknown", LIMITS)
    assert found.manifest.empty and list(found.manifest.columns) == ["path", "group"] and not found.skipped


def test_a_missing_source_says_what_to_set(tmp_path):
    with pytest.raises(DownloadError) as error:
        collect_unknown_set("nowhere.zip", tmp_path / "unknown", LIMITS)
    assert str(error.value) == ("data.unknown_source 'nowhere.zip' is neither a zip, a folder nor an https URL to a zip; "
                                'set it to one, or to "" to skip the unknown-photo figures')


def test_the_stage_line_counts_each_group_and_shows_the_skipped_files():
    unknowns = UnknownSet(pd.DataFrame({"path": ["a.jpg", "b.jpg", "c.jpg"],
                                        "group": ["not-fish", "not-fish", "fish-elsewhere"]}),
                          skipped=[{"path": "x.txt", "reason": "not a photo"}])
    assert unknowns.lines("corpus.zip") == [
        "3 unknown-set photos from corpus.zip (not-fish 2, fish-elsewhere 1), 1 skipped", "  skipped x.txt: not a photo"]
    assert UnknownSet(pd.DataFrame({"path": [], "group": []})).lines("") == [
        "data.unknown_source is empty: no unknown photos, select will skip the unknown-photo figures"]
