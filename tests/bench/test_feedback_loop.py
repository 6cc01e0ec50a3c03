"""bench/feedback_loop.py on a colour bundle: half of each class is marked through a real store and accepted,
the other half held out untouched, the split stable, a folder that is no species refused by name, and near
duplicates counted as the prepare stage counts them."""

import hashlib

import numpy as np
import pytest
from PIL import Image
from support import REPO_ROOT
from support.app_bundles import COLOUR_CLASSES, colour_photo, jpeg_bytes
from support.benches import load_bench

from fish_classifier.data.prepare import PrepareSettings
from fish_classifier.feedback.store import FeedbackStore
from fish_classifier.params import stage_params

feedback_loop = load_bench("feedback_loop")


def labelled_photos(folder, per_class: int = 4):
    for index, entry in enumerate(COLOUR_CLASSES):
        for seed in range(per_class):
            path = folder / entry["label"] / f"{seed}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg_bytes(colour_photo(index, 48, seed=10 * index + seed)))
    return folder


def test_half_of_each_class_is_marked_and_accepted_the_rest_held_out(tmp_path, colour_bundle, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)  # params.yaml's unpacking limits
    photos = labelled_photos(tmp_path / "photos")
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    feedback_loop.main(["--photos", str(photos), "--store", url, "--held-out", str(tmp_path / "held"),
                        "--bundle", str(colour_bundle)])

    records = FeedbackStore(url).records()
    assert len(records) == 6 and {r.status for r in records} == {"accepted"}
    assert sorted(r.label for r in records) == sorted(e["label"] for e in COLOUR_CLASSES for _ in range(2))
    assert all(r.model.label in {e["label"] for e in COLOUR_CLASSES} for r in records)
    held = sorted((tmp_path / "held").rglob("*.jpg"))
    assert len(held) == 6 and {p.parent.name for p in held} == {e["label"] for e in COLOUR_CLASSES}
    marked = {r.photo_sha256 for r in records}
    assert not marked & {hashlib.sha256(p.read_bytes()).hexdigest() for p in held}  # no photo on both sides
    out = capsys.readouterr().out
    assert "12 photos: 6 marked" in out and "6 held out" in out
    assert "near duplicates (phash <= 4) of a marked one: " in out


def test_the_split_is_by_hash_and_alternates_within_each_class(tmp_path):
    photos = labelled_photos(tmp_path / "photos")
    files = sorted(photos.rglob("*.jpg"))
    marked, held = feedback_loop.split_halves(files)
    again = feedback_loop.split_halves(list(reversed(files)))
    assert (sorted(marked), sorted(held)) == (sorted(again[0]), sorted(again[1]))
    for entry in COLOUR_CLASSES:
        by_hash = sorted(files_of := [p for p in files if p.parent.name == entry["label"]],
                         key=lambda p: hashlib.sha256(p.read_bytes()).hexdigest())
        assert [p in marked for p in by_hash] == [True, False, True, False], files_of


def test_a_folder_that_is_no_species_is_refused_by_name(tmp_path, colour_bundle, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)
    photos = labelled_photos(tmp_path / "photos", per_class=1)
    (photos / "salmon").mkdir()
    (photos / "salmon" / "a.jpg").write_bytes(jpeg_bytes(colour_photo(0, 48, seed=99)))
    with pytest.raises(SystemExit):
        feedback_loop.main(["--photos", str(photos), "--store", f"sqlite:///{tmp_path / 'f.db'}",
                            "--held-out", str(tmp_path / "held"), "--bundle", str(colour_bundle)])
    assert "no species of the bundle: salmon" in capsys.readouterr().err


def test_near_duplicates_are_counted_with_the_prepare_stage_s_hash_and_distance(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    settings = stage_params(prepare=PrepareSettings).prepare
    blocks = [np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8) for seed in (1, 2)]
    paths = {}
    for name, pixels in (("marked.jpg", blocks[0]), ("copy.png", blocks[0]), ("other.png", blocks[1])):
        paths[name] = tmp_path / name
        Image.fromarray(pixels).resize((64, 64), Image.Resampling.NEAREST).save(paths[name])
    held_out = [paths["copy.png"], paths["other.png"]]
    assert feedback_loop.near_duplicates([paths["marked.jpg"]], held_out, settings) == 1  # the copy, not the other
    assert feedback_loop.near_duplicates([], held_out, settings) == 0
