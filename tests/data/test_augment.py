import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from support.synthetic_images import noise_image, seed_for, write_image

from fish_classifier.data.augment import Augmentation, augment_train, copies_needed
from fish_classifier.data.manifest import MANIFEST_COLUMNS
from fish_classifier.params import ParamsError

RARE, COMMON = "animal fish bass", "fish sea_food trout"
RANGES = Augmentation(max_rotation=15, max_zoom=0.15, brightness=0.2, contrast=0.2)  # params.yaml's


@pytest.fixture
def manifest(tmp_path):
    """2 rare and 6 common train images, plus val and test images of the rare class."""
    rows = []
    for split, label, n in [("train", RARE, 2), ("train", COMMON, 6), ("val", RARE, 2), ("test", RARE, 2)]:
        for i in range(n):
            path = f"data/prepared/{split}/{label}/{i:03d}.jpg"
            write_image(tmp_path / path, size=(24, 20), seed=seed_for(path))
            rows.append([path, split, label, f"sha{len(rows)}", 24, 20, False, "", "dataset"])
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def _augment(manifest, repo_root, *, out="data/augmented", seed=42, min_per_class=5):
    return augment_train(
        manifest,
        Path(repo_root) / out,
        min_per_class=min_per_class,
        seed=seed,
        augmentation=RANGES,
        repo_root=repo_root,
    )


def test_only_train_classes_below_the_minimum_need_copies(manifest):
    assert copies_needed(manifest, 5) == {RARE: 3}
    assert copies_needed(manifest, 8) == {RARE: 6, COMMON: 2}
    assert copies_needed(manifest, 2) == {}


def test_small_class_is_raised_to_the_minimum_from_its_own_train_images(manifest, tmp_path):
    augmented = _augment(manifest, tmp_path)
    assert list(augmented.columns) == MANIFEST_COLUMNS
    assert augmented["label"].tolist() == [RARE] * 3
    assert (augmented["split"] == "train").all() and augmented["augmented"].all()
    rare_train = set(manifest.loc[(manifest["split"] == "train") & (manifest["label"] == RARE), "path"])
    assert set(augmented["source"]) == rare_train  # each original used, val/test never
    for row in augmented.itertuples():
        assert row.path.startswith(f"data/augmented/{RARE}/") and row.path.endswith(".png")
        data = (tmp_path / row.path).read_bytes()
        assert row.sha256 == hashlib.sha256(data).hexdigest()
        with Image.open(tmp_path / row.path) as image:
            assert image.mode == "RGB" and image.size == (row.width, row.height) == (24, 20)


def test_same_params_and_data_give_byte_identical_files(manifest, tmp_path):
    first = _augment(manifest, tmp_path, out="run1", min_per_class=8)
    second = _augment(manifest, tmp_path, out="run2", min_per_class=8)
    assert len(first) == 6 + 2
    assert first["sha256"].tolist() == second["sha256"].tolist()
    for a, b in zip(first["path"], second["path"], strict=True):
        assert (tmp_path / a).read_bytes() == (tmp_path / b).read_bytes()
    assert first["path"].str.replace("run1/", "").tolist() == second["path"].str.replace("run2/", "").tolist()


def test_another_seed_gives_other_images(manifest, tmp_path):
    first = _augment(manifest, tmp_path, out="seed1", seed=1)
    second = _augment(manifest, tmp_path, out="seed2", seed=2)
    assert first["sha256"].tolist() != second["sha256"].tolist()


def test_a_class_draws_the_same_copies_whatever_the_other_classes(manifest, tmp_path):
    alone = _augment(manifest[manifest["label"] == RARE], tmp_path, out="alone", min_per_class=8)
    together = _augment(manifest, tmp_path, out="together", min_per_class=8)
    assert alone["sha256"].tolist() == together.loc[together["label"] == RARE, "sha256"].tolist()


def test_copies_differ_from_their_source():
    photo = noise_image((32, 32), seed=9)
    rng = np.random.default_rng(0)
    variants = [RANGES.apply(photo, rng) for _ in range(3)]
    for variant in variants:
        assert variant.size == photo.size and variant.mode == "RGB"
        assert not np.array_equal(np.asarray(variant), np.asarray(photo))


def test_zero_ranges_leave_the_image_as_is_or_mirrored():
    photo = noise_image((16, 16), seed=10)
    still = Augmentation(max_rotation=0, max_zoom=0, brightness=0, contrast=0)
    pixels = np.asarray(still.apply(photo, np.random.default_rng(0)))
    original = np.asarray(photo)
    assert np.array_equal(pixels, original) or np.array_equal(pixels, original[:, ::-1])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_rotation": -1}, "augment.max_rotation must be a number within [0, 180] (degrees either way), got -1"),
        ({"max_zoom": 1.5}, "augment.max_zoom must be a number within [0, 1) (fraction zoomed in, at most), got 1.5"),
        ({"brightness": -0.1}, "augment.brightness must be a number within [0, 1) (+/- fraction), got -0.1"),
        ({"contrast": "0.2"}, "augment.contrast must be a number within [0, 1) (+/- fraction), got '0.2'"),
    ],
)
def test_out_of_range_settings_are_refused(settings, message):
    with pytest.raises(ParamsError) as refused:
        Augmentation.from_params({**RANGES.model_dump(), **settings})
    assert str(refused.value) == message


def test_negative_minimum_is_refused(manifest):
    with pytest.raises(ValueError, match="min_per_class must be >= 0, got -3"):
        copies_needed(manifest, -3)


def test_ranges_come_from_the_augment_params_and_a_misspelt_one_is_refused():
    augmentation = Augmentation.from_params(
        {"min_per_class": 200, "max_rotation": 10, "max_zoom": 0.1, "brightness": 0.3, "contrast": 0.05})
    assert augmentation == Augmentation(max_rotation=10, max_zoom=0.1, brightness=0.3, contrast=0.05)
    with pytest.raises(ParamsError) as refused:
        Augmentation.from_params({**RANGES.model_dump(), "min_per_class": 200, "max_rotaton": 10})
    assert str(refused.value) == (
        "augment.max_rotaton is not a known key (a typo?), got 10; "
        "the keys of augment are: max_rotation, max_zoom, brightness, contrast")
