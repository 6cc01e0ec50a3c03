"""Train/val/test leakage: the same photo, or nearly the same, sitting in two splits.

The fish dataset was augmented before it was split, so a flipped or re-encoded copy
of a training photo can turn up in validation or test and flatter the scores.
Exact duplicates share a sha256; near duplicates are different files whose
perceptual hashes (imagehash.phash) differ in at most `max_distance` bits.
"""

from itertools import combinations

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from fish_classifier.layout import SPLITS

SPLIT_PAIRS = [f"{a}-{b}" for a, b in combinations(SPLITS, 2)]
# Rows of the first split compared at once: bounds the distance matrix's memory on big datasets.
_CHUNK_ROWS = 2048


def perceptual_hash(image: Image.Image, hash_size: int) -> np.ndarray:
    """The image's phash as a flat boolean array of hash_size**2 bits."""
    return imagehash.phash(image, hash_size=hash_size).hash.flatten()


def find_leaks(manifest: pd.DataFrame, hashes: np.ndarray, max_distance: int) -> dict:
    """Exact and near duplicates across each pair of splits.

    `hashes` holds one row of phash bits per manifest row. Returns
    {"exact_duplicates": {pair: count}, "near_duplicates": {pair: count},
     "exact_duplicate_pairs": {pair: [{split_a: path, split_b: path}, ...]},
     "near_duplicate_pairs": {pair: [{split_a: path, split_b: path, "distance": d}, ...]}}
    with pair one of "train-val", "train-test", "val-test".
    """
    if max_distance < 0:
        raise ValueError(f"near_duplicate_distance must be >= 0, got {max_distance}")
    manifest = manifest.reset_index(drop=True)
    exact, near = {}, {}
    for first, second in combinations(SPLITS, 2):
        a = manifest.index[manifest["split"] == first].to_numpy()
        b = manifest.index[manifest["split"] == second].to_numpy()
        pair = f"{first}-{second}"
        exact[pair] = _exact_pairs(manifest, a, b, first, second)
        near[pair] = _near_pairs(manifest, hashes, a, b, first, second, max_distance)
    return {
        "exact_duplicates": {pair: len(rows) for pair, rows in exact.items()},
        "near_duplicates": {pair: len(rows) for pair, rows in near.items()},
        "exact_duplicate_pairs": exact,
        "near_duplicate_pairs": near,
    }


def hamming_distances(a_bits: np.ndarray, b_bits: np.ndarray) -> np.ndarray:
    """Matrix of Hamming distances between every row of `a_bits` and every row of `b_bits`."""
    # With bits as +1/-1, a dot product is (agreeing bits - differing bits): one BLAS call per block.
    a = a_bits.astype(np.float32) * 2 - 1
    b = b_bits.astype(np.float32) * 2 - 1
    n_bits = a.shape[1]
    return np.rint((n_bits - a @ b.T) / 2).astype(np.int32)


def _exact_pairs(manifest, a, b, first, second) -> list[dict]:
    left = manifest.loc[a, ["path", "sha256"]].rename(columns={"path": first})
    right = manifest.loc[b, ["path", "sha256"]].rename(columns={"path": second})
    matched = left.merge(right, on="sha256").sort_values([first, second])
    return matched[[first, second]].to_dict("records")


def _near_pairs(manifest, hashes, a, b, first, second, max_distance) -> list[dict]:
    if len(a) == 0 or len(b) == 0:
        return []
    paths, sha = manifest["path"].to_numpy(), manifest["sha256"].to_numpy()
    found = []
    for start in range(0, len(a), _CHUNK_ROWS):
        rows = a[start : start + _CHUNK_ROWS]
        distances = hamming_distances(hashes[rows], hashes[b])
        i, j = np.nonzero(distances <= max_distance)
        for row, col, distance in zip(rows[i], b[j], distances[i, j], strict=True):
            if sha[row] != sha[col]:  # byte-identical files are counted as exact duplicates
                found.append({first: paths[row], second: paths[col], "distance": int(distance)})
    return sorted(found, key=lambda pair: (pair[first], pair[second]))


def duplicated_from_train(report: dict, split: str) -> set[str]:
    """Paths of `split` that have an exact or near duplicate in train, read from prepare's report."""
    pair = f"train-{split}"
    found = report["exact_duplicate_pairs"].get(pair, []) + report["near_duplicate_pairs"].get(pair, [])
    return {entry[split] for entry in found}
