import pandas as pd
import pytest
from support.app_bundles import text_photo

from fish_classifier.data.unzip import DownloadError, UnpackLimits
from fish_classifier.data.field_set import add_feedback_photos, collect_field_set
from fish_classifier.data.manifest import DatasetError

LIMITS = UnpackLimits(max_unpacked_mb=100, max_compression_ratio=100)
LABELS = ["animal fish", "fish sea_food trout"]


def test_photos_get_the_class_of_their_folder_and_unreadable_files_are_skipped(tmp_path):
    source = tmp_path / "field-dev"
    (source / "fish sea_food trout" / "angler").mkdir(parents=True)
    (source / "animal fish").mkdir()
    text_photo("trout").save(source / "fish sea_food trout" / "angler" / "t1.jpg")
    text_photo("carp").save(source / "animal fish" / "c1.png")
    (source / "animal fish" / "broken.jpg").write_bytes(b"\xff\xd8 no")
    (source / "SOURCES.csv").write_text("file,source\n")
    found = collect_field_set(str(source), tmp_path / "field", LIMITS, LABELS)
    out = (tmp_path / "field" / "photos").as_posix()
    assert found.manifest.values.tolist() == [
        [f"{out}/animal fish/c1.png", "animal fish", "field_source"],
        [f"{out}/fish sea_food trout/angler/t1.jpg", "fish sea_food trout", "field_source"]]
    assert sorted(entry["path"] for entry in found.skipped) == ["photos/SOURCES.csv", "photos/animal fish/broken.jpg"]


def test_a_folder_that_is_no_class_is_refused_naming_it_and_the_classes(tmp_path):
    (tmp_path / "src" / "salmon").mkdir(parents=True)
    text_photo("salmon").save(tmp_path / "src" / "salmon" / "s.jpg")
    with pytest.raises(DatasetError) as error:
        collect_field_set(str(tmp_path / "src"), tmp_path / "field", LIMITS, LABELS)
    assert str(error.value) == ("data.field_source has photos in no class folder: salmon; a photo must lie in a "
                                "folder named as a class: animal fish, fish sea_food trout")


def test_an_empty_source_is_an_empty_set_and_a_missing_one_says_what_to_set(tmp_path):
    found = collect_field_set("", tmp_path / "field", LIMITS, LABELS)
    assert found.manifest.empty and list(found.manifest.columns) == ["path", "label", "origin"]
    with pytest.raises(DownloadError) as error:
        collect_field_set("nowhere.zip", tmp_path / "field", LIMITS, LABELS)
    assert str(error.value) == ("data.field_source 'nowhere.zip' is neither a zip, a folder nor an https URL to a zip; "
                                'set it to one, or to "" to skip the field figures')


def test_feedback_photos_bound_for_the_field_are_copied_in_after_the_sources_with_their_origin(tmp_path):
    (tmp_path / "src" / "animal fish").mkdir(parents=True)
    text_photo("carp").save(tmp_path / "src" / "animal fish" / "c1.png")
    exported = tmp_path / "data" / "feedback" / "field" / "fish sea_food trout" / f"{'ab' * 32}.jpg"
    exported.parent.mkdir(parents=True)
    text_photo("trout").save(exported)
    feedback = pd.DataFrame([[exported.as_posix(), "fish sea_food trout", "ab" * 32]], columns=["path", "label", "sha256"])
    out = tmp_path / "data" / "field"
    field = add_feedback_photos(collect_field_set(str(tmp_path / "src"), out, LIMITS, LABELS), feedback, out)
    copied = out / "feedback" / "fish sea_food trout" / exported.name
    assert field.manifest.values.tolist() == [
        [f"{out.as_posix()}/photos/animal fish/c1.png", "animal fish", "field_source"],
        [copied.as_posix(), "fish sea_food trout", "feedback"]]
    assert copied.read_bytes() == exported.read_bytes()
    # Feedback alone, with no data.field_source, is a field set too.
    alone = add_feedback_photos(collect_field_set("", out, LIMITS, LABELS), feedback, out)
    assert alone.manifest["origin"].tolist() == ["feedback"] and copied.is_file()
