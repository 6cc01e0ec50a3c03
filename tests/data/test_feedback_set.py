import hashlib
import zipfile

import pandas as pd
import pytest
from support.synthetic_images import image_bytes

from fish_classifier.data.unzip import DownloadError
from fish_classifier.data.feedback_set import (
    FIELD,
    NOT_FISH,
    TRAIN,
    FeedbackSet,
    FeedbackSetSettings,
    collect_feedback,
    feedback_split,
)
from fish_classifier.data.manifest import DatasetError
from fish_classifier.feedback.store import FeedbackStore, ModelAnswer

SPECIES = ["animal fish", "fish sea_food trout"]
ANSWER = ModelAnswer("animal fish", 0.6, False, 1.0)  # what the model said, for the store


def settings(share=0.5):
    return FeedbackSetSettings(max_unpacked_mb=100, max_compression_ratio=100, feedback_source="",
                               feedback_train_share=share)


def write_photos(root, seeds_by_label):
    """<label>/<seed>.jpg per seed; returns {sha256: label} of what was written."""
    written = {}
    for label, seeds in seeds_by_label.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for seed in seeds:
            data = image_bytes(seed=seed)
            (root / label / f"{seed}.jpg").write_bytes(data)
            written[hashlib.sha256(data).hexdigest()] = label
    return written


def parts_by_hash(feedback):
    return {part: dict(zip(frame["sha256"], frame["label"])) for part, frame in feedback.parts.items()}


def test_each_fish_photo_goes_by_its_hash_and_stays_put_when_photos_are_added(tmp_path):
    source = tmp_path / "export"
    first = write_photos(source, {"animal fish": range(0, 6), "fish sea_food trout": range(6, 12), NOT_FISH: [12]})
    before = parts_by_hash(collect_feedback(str(source), tmp_path / "one", settings(), SPECIES))
    fish = {sha: label for sha, label in first.items() if label != NOT_FISH}
    expected_train = {sha for sha in fish if int(sha[:8], 16) / 2**32 < 0.5}
    assert set(before[TRAIN]) == expected_train and set(before[FIELD]) == set(fish) - expected_train
    assert before[TRAIN] | before[FIELD] == fish and before[NOT_FISH] == {
        sha: NOT_FISH for sha, label in first.items() if label == NOT_FISH}
    assert before[TRAIN] and before[FIELD]  # 12 hashes: both parts get some

    write_photos(source, {"animal fish": range(20, 30), "fish sea_food trout": range(30, 40)})
    after = parts_by_hash(collect_feedback(str(source), tmp_path / "two", settings(), SPECIES))
    assert before[TRAIN].items() <= after[TRAIN].items() and before[FIELD].items() <= after[FIELD].items()
    assert len(after[TRAIN]) + len(after[FIELD]) == 32


def test_the_parts_are_written_as_label_folders_of_hash_names_with_their_manifests(tmp_path):
    written = write_photos(tmp_path / "src", {"fish sea_food trout": [1], NOT_FISH: [2]})
    out = tmp_path / "data" / "feedback"
    feedback = collect_feedback(str(tmp_path / "src"), out, settings(share=1.0), SPECIES)
    trout, not_fish = (sha for sha, label in sorted(written.items(), key=lambda item: item[1] == NOT_FISH))
    assert pd.read_csv(out / TRAIN / "manifest.csv").values.tolist() == [
        [f"{out.as_posix()}/train/fish sea_food trout/{trout}.jpg", "fish sea_food trout", trout]]
    assert pd.read_csv(out / NOT_FISH / "manifest.csv").values.tolist() == [
        [f"{out.as_posix()}/not-fish/{not_fish}.jpg", NOT_FISH, not_fish]]
    assert pd.read_csv(out / FIELD / "manifest.csv").empty and feedback.parts[FIELD].empty
    assert hashlib.sha256((out / TRAIN / "fish sea_food trout" / f"{trout}.jpg").read_bytes()).hexdigest() == trout
    assert sorted(p.name for p in out.iterdir()) == [FIELD, NOT_FISH, TRAIN]  # no scratch folder left


def test_the_share_sends_every_fish_photo_one_way_at_its_ends():
    hashes = [hashlib.sha256(bytes([i])).hexdigest() for i in range(50)]
    assert {feedback_split(sha, 1.0) for sha in hashes} == {TRAIN}
    assert {feedback_split(sha, 0.0) for sha in hashes} == {FIELD}
    assert feedback_split("7fffffff" + "0" * 56, 0.5) == TRAIN and feedback_split("80000000" + "0" * 56, 0.5) == FIELD


def test_a_folder_that_is_no_species_is_refused_naming_it_and_the_species(tmp_path):
    write_photos(tmp_path / "src", {"animal fish": [1], "salmon": [2]})
    with pytest.raises(DatasetError) as error:
        collect_feedback(str(tmp_path / "src"), tmp_path / "out", settings(), SPECIES)
    assert str(error.value) == ("data.feedback_source has photos in folders that are no species: salmon; a photo "
                                "must lie in a folder named as a species (animal fish, fish sea_food trout) or not-fish")


def test_a_photo_twice_with_one_label_is_one_photo_and_with_two_labels_an_error(tmp_path):
    source = tmp_path / "src"
    write_photos(source, {"animal fish": [1, 2]})
    (source / "animal fish" / "again.jpg").write_bytes(image_bytes(seed=1))
    feedback = collect_feedback(str(source), tmp_path / "out", settings(), SPECIES)
    assert sum(len(frame) for frame in feedback.parts.values()) == 2
    assert feedback.repeats == [{"path": "animal fish/again.jpg", "same_as": "animal fish/1.jpg"}]

    (source / NOT_FISH).mkdir()
    (source / NOT_FISH / "cat.jpg").write_bytes(image_bytes(seed=2))
    with pytest.raises(DatasetError) as error:
        collect_feedback(str(source), tmp_path / "out", settings(), SPECIES)
    sha = hashlib.sha256(image_bytes(seed=2)).hexdigest()
    assert str(error.value) == (
        "data.feedback_source gives one photo two labels: animal fish/2.jpg (animal fish) and not-fish/cat.jpg "
        f"(not-fish) are the same file (sha256 {sha[:12]}...); remove the wrong one, or reject its record")


def test_an_unreadable_file_is_skipped_with_its_reason_and_the_rest_kept(tmp_path):
    source = tmp_path / "src"
    write_photos(source, {"animal fish": [1]})
    (source / "animal fish" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    feedback = collect_feedback(str(source), tmp_path / "out", settings(), SPECIES)
    assert [entry["path"] for entry in feedback.skipped] == ["animal fish/broken.jpg"]
    assert feedback.skipped[0]["reason"].startswith("not a readable image")
    assert len(feedback.parts[TRAIN]) + len(feedback.parts[FIELD]) == 1


def test_a_zip_source_gives_the_same_parts_as_its_folder(tmp_path):
    source = tmp_path / "src"
    write_photos(source, {"animal fish": [1, 2, 3], "fish sea_food trout": [4, 5], NOT_FISH: [6]})
    archive = tmp_path / "feedback.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*.jpg")):
            zf.write(path, f"feedback-export/{path.relative_to(source).as_posix()}")  # one folder above: any depth
    from_zip = parts_by_hash(collect_feedback(str(archive), tmp_path / "a", settings(), SPECIES))
    assert from_zip == parts_by_hash(collect_feedback(str(source), tmp_path / "b", settings(), SPECIES))
    assert sum(map(len, from_zip.values())) == 6


def test_a_database_url_exports_its_accepted_records_only(tmp_path):
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    answer = ModelAnswer("animal fish", 0.6, False, 1.0)
    with FeedbackStore(url) as store:
        accepted = [store.add(image_bytes(seed=seed), label, answer, "bundle-1", species=SPECIES)
                    for seed, label in [(1, "fish sea_food trout"), (2, "animal fish"), (3, NOT_FISH)]]
        store.add(image_bytes(seed=4), "animal fish", answer, "bundle-1", species=SPECIES)  # left new
        store.set_status([record.id for record in accepted], "accepted")
    feedback = collect_feedback(url, tmp_path / "out", settings(), SPECIES)
    labels = parts_by_hash(feedback)
    assert sorted([*labels[TRAIN].values(), *labels[FIELD].values()]) == ["animal fish", "fish sea_food trout"]
    assert list(labels[NOT_FISH].values()) == [NOT_FISH]


def test_an_exported_photo_keeps_the_stores_key_so_its_side_never_depends_on_the_jpeg_encoder(tmp_path):
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    uploads = [image_bytes(size=(40, 40), seed=seed) for seed in range(6)]
    with FeedbackStore(url) as store:
        for data in uploads:
            store.add(data, SPECIES[0], ANSWER, "v1", species=SPECIES)
        store.set_status([r.id for r in store.records()], "accepted")
        store.export(tmp_path / "export")
    keys = {hashlib.sha256(data).hexdigest() for data in uploads}  # the uploads', not the stored JPEGs' bytes
    for source in (url, str(tmp_path / "export")):
        feedback = collect_feedback(source, tmp_path / f"out-{len(source)}", settings(), SPECIES)
        parts = parts_by_hash(feedback)
        assert set(parts[TRAIN]) | set(parts[FIELD]) == keys
        assert all(feedback_split(key, 0.5) == part for part in (TRAIN, FIELD) for key in parts[part])


def test_a_database_url_with_no_database_says_so_and_makes_none(tmp_path):
    missing = tmp_path / "nowhere" / "feedback.db"
    with pytest.raises(DownloadError) as error:
        collect_feedback(f"sqlite:///{missing}", tmp_path / "out", settings(), SPECIES)
    assert str(error.value) == (f"data.feedback_source 'sqlite:///{missing}': there is no feedback database at "
                                f"{missing}; point it at the app's store (sqlite:///feedback/feedback.db by default)")
    assert not missing.exists()


def test_an_empty_source_gives_three_empty_parts_and_a_missing_one_says_what_to_set(tmp_path):
    feedback = collect_feedback("", tmp_path / "out", settings(), SPECIES)
    for part in (TRAIN, FIELD, NOT_FISH):
        assert feedback.parts[part].empty
        assert list(pd.read_csv(tmp_path / "out" / part / "manifest.csv").columns) == ["path", "label", "sha256"]
    with pytest.raises(DownloadError) as error:
        collect_feedback("nowhere.zip", tmp_path / "out", settings(), SPECIES)
    assert str(error.value) == ("data.feedback_source 'nowhere.zip' is neither a zip, a folder nor an https URL to a zip; "
                                'set it to one, or to "" for no feedback')


def test_the_stage_line_counts_each_part_and_shows_skipped_and_repeated_photos():
    frame = pd.DataFrame({"path": ["p.jpg"]})
    feedback = FeedbackSet({"train": frame, "field": frame.iloc[:0], "not-fish": frame},
                           skipped=[{"path": "notes.txt", "reason": "not a photo"}],
                           repeats=[{"path": "trout/b.jpg", "same_as": "trout/a.jpg"}])
    assert feedback.lines("marks.zip") == [
        "feedback from marks.zip: train 1, field 0, not-fish 1; 1 files skipped, 1 repeated photos kept once",
        "  skipped notes.txt: not a photo", "  trout/b.jpg is the same photo as trout/a.jpg: kept once"]
    assert feedback.lines("") == ["data.feedback_source is empty: no feedback photos"]
