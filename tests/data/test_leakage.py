import time

import numpy as np
import pandas as pd
import pytest
from PIL import ImageEnhance
from support.synthetic_images import noise_image

from fish_classifier.data.leakage import (
    SPLIT_PAIRS,
    duplicated_from_train,
    find_leaks,
    hamming_distances,
    perceptual_hash,
)
from fish_classifier.data.manifest import MANIFEST_COLUMNS


def _manifest(rows):
    """rows: (path, split, sha256) -> a manifest with the other columns filled in."""
    return pd.DataFrame(
        [[path, split, "animal fish", sha, 32, 32, False, "", "dataset"] for path, split, sha in rows],
        columns=MANIFEST_COLUMNS,
    )


def _bits(*flipped_counts, n_bits=64):
    """One hash row per count: a base pattern with the first `count` bits flipped."""
    base = np.random.default_rng(0).random(n_bits) < 0.5
    rows = []
    for count in flipped_counts:
        row = base.copy()
        row[:count] = ~row[:count]
        rows.append(row)
    return np.array(rows)


def test_perceptual_hash_matches_a_slightly_brighter_copy_not_another_photo():
    photo = noise_image((64, 64), seed=1).resize((256, 256))
    brighter = ImageEnhance.Brightness(photo).enhance(1.1)
    other = noise_image((64, 64), seed=2).resize((256, 256))
    hashes = np.array([perceptual_hash(image, 8) for image in (photo, brighter, other)])
    assert hashes.shape == (3, 64) and hashes.dtype == bool
    distances = hamming_distances(hashes, hashes)
    assert distances[0, 1] <= 4
    assert distances[0, 2] > 10


def test_hamming_distances_count_differing_bits():
    bits = _bits(0, 3, 64)
    assert hamming_distances(bits, bits).tolist() == [[0, 3, 64], [3, 0, 61], [64, 61, 0]]


def test_exact_and_near_duplicates_are_counted_per_split_pair():
    manifest = _manifest(
        [
            ("train/a.jpg", "train", "sha-a"),
            ("train/b.jpg", "train", "sha-b"),
            ("val/a-copy.jpg", "val", "sha-a"),  # exact duplicate of train/a
            ("val/b-edit.jpg", "val", "sha-b2"),  # near duplicate of train/b (3 bits)
            ("test/b-far.jpg", "test", "sha-b3"),  # 5 bits from train/b: beyond the distance
            ("test/a-copy.jpg", "test", "sha-a"),  # exact duplicate of train/a and val/a-copy
        ]
    )
    a, b = _bits(40), _bits(0)[0]
    hashes = np.array([a[0], b, a[0], _bits(3)[0], _bits(5)[0], a[0]])
    leaks = find_leaks(manifest, hashes, max_distance=4)

    assert leaks["exact_duplicates"] == {"train-val": 1, "train-test": 1, "val-test": 1}
    assert leaks["near_duplicates"] == {"train-val": 1, "train-test": 0, "val-test": 1}
    assert leaks["exact_duplicate_pairs"]["train-val"] == [{"train": "train/a.jpg", "val": "val/a-copy.jpg"}]
    assert leaks["near_duplicate_pairs"]["train-val"] == [
        {"train": "train/b.jpg", "val": "val/b-edit.jpg", "distance": 3}
    ]
    # val/b-edit (3 flipped bits) and test/b-far (5 flipped, the same 3 among them) are 2 apart.
    assert leaks["near_duplicate_pairs"]["val-test"] == [
        {"val": "val/b-edit.jpg", "test": "test/b-far.jpg", "distance": 2}
    ]


def test_no_leaks_between_unrelated_images():
    rows = [(f"{split}/{i}.jpg", split, f"{split}{i}") for split in ("train", "val", "test") for i in range(5)]
    manifest = _manifest(rows)
    hashes = np.random.default_rng(3).random((15, 64)) < 0.5
    leaks = find_leaks(manifest, hashes, max_distance=4)
    assert leaks["exact_duplicates"] == dict.fromkeys(SPLIT_PAIRS, 0)
    assert leaks["near_duplicates"] == dict.fromkeys(SPLIT_PAIRS, 0)


def test_negative_distance_is_refused():
    with pytest.raises(ValueError, match="near_duplicate_distance must be >= 0, got -1"):
        find_leaks(_manifest([]), np.zeros((0, 64), bool), max_distance=-1)


def test_near_duplicate_search_is_fast_for_a_few_thousand_images():
    n = 6000  # twice the real dataset's size
    splits = ["train"] * 4000 + ["val"] * 1000 + ["test"] * 1000
    manifest = _manifest([(f"{s}/{i}.jpg", s, str(i)) for i, s in enumerate(splits)])
    hashes = np.random.default_rng(4).random((n, 256)) < 0.5  # hash_size 16
    start = time.perf_counter()
    find_leaks(manifest, hashes, max_distance=4)
    assert time.perf_counter() - start < 5


def test_duplicated_from_train_lists_the_split_photos_with_an_exact_or_near_train_twin():
    report = {
        "exact_duplicate_pairs": {"train-test": [{"train": "tr/a.jpg", "test": "te/a.jpg"}], "train-val": []},
        "near_duplicate_pairs": {
            "train-test": [{"train": "tr/b.jpg", "test": "te/b.jpg", "distance": 3},
                           {"train": "tr/c.jpg", "test": "te/b.jpg", "distance": 2}],
            "train-val": [{"train": "tr/d.jpg", "val": "va/d.jpg", "distance": 1}],
            "val-test": [{"val": "va/e.jpg", "test": "te/e.jpg", "distance": 0}],
        },
    }
    assert duplicated_from_train(report, "test") == {"te/a.jpg", "te/b.jpg"}  # a val twin does not count
    assert duplicated_from_train(report, "val") == {"va/d.jpg"}
