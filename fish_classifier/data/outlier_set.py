"""The outlier pool (data/outliers): photos that are no fish, to fit or train the unknown-photo detector on.

It gathers `data.outlier_source` (a zip or folder of photos that are no fish, in any folder layout: a corpus
such as ../shared/data/outliers-dev.zip) and the photos users marked as no fish (data/feedback/not-fish), each
read with the same readers as the fish. The pool is de-duplicated by the sha256 of the bytes, and a photo that
is the same file as, or a near duplicate (perceptual hash within `prepare.near_duplicate_distance` bits) of, a
val or test photo or a photo of the measuring set (data/unknown) is dropped and counted: what fits the detector
must not be what scores the models or measures the detector. The pool never feeds data/unknown.

data/outliers/manifest.csv lists it: path, origin (outlier_source or feedback), sha256.
"""

import hashlib
import shutil
from dataclasses import dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from fish_classifier.cpus import usable_cpus
from fish_classifier.data.unzip import UnpackLimits
from fish_classifier.data.leakage import hamming_distances, perceptual_hash
from fish_classifier.data.photo_source import gather_photos
from fish_classifier.images import ImageError, open_rgb, read_image_file
from fish_classifier.params import text

OUTLIER_COLUMNS = ["path", "origin", "sha256"]
OUTLIER_SOURCE, FEEDBACK = "outlier_source", "feedback"  # origins
_PARALLEL_FROM = 256  # photos: fewer are hashed in this process, a pool costs more than it saves
_CHUNK_ROWS = 2048  # pool photos compared at once against the protected ones: bounds the distance matrix


class OutlierSetSettings(UnpackLimits):
    """What the outliers stage reads from params.yaml's `data`: the source, and (as the UnpackLimits it is) how
    much a zip of it may unpack to."""

    outlier_source: text(empty=True, meaning=": a zip or folder of photos that are no fish, or empty for none")


@dataclass
class OutlierPool:
    manifest: pd.DataFrame  # OUTLIER_COLUMNS
    skipped: list[dict] = field(default_factory=list)  # path, reason
    repeats: int = 0  # photos that were the same file as one kept
    dropped: dict[str, int] = field(default_factory=dict)  # {protected set: photos dropped as its duplicates}


def collect_outlier_pool(source: str, not_fish: pd.DataFrame, protected: pd.DataFrame, out_dir: str | Path,
                         limits: UnpackLimits, *, hash_size: int, max_distance: int) -> OutlierPool:
    """Gather `source` into `out_dir`/photos and the feedback's not-fish photos (`not_fish`: path, label, sha256)
    into `out_dir`/feedback, keep each photo once, and drop (files and all) the duplicates of `protected`
    (path, set: the photos the pool must not overlap, e.g. val, test, unknown).

    Raises DownloadError when `source` is neither empty, a zip nor a folder.
    """
    out_dir = Path(out_dir)
    found = gather_photos(source, out_dir / "photos", limits, "data.outlier_source", "for no outlier source")
    feedback_dir = out_dir / FEEDBACK
    shutil.rmtree(feedback_dir, ignore_errors=True)
    feedback_dir.mkdir(parents=True)
    copied = []
    for entry in not_fish.itertuples():
        target = feedback_dir / Path(entry.path).name  # <sha256><suffix>: one name per photo
        shutil.copyfile(entry.path, target)
        copied.append(target)
    photos = [*found.photos, *copied]
    origins = [OUTLIER_SOURCE] * len(found.photos) + [FEEDBACK] * len(copied)
    prints = fingerprints(photos, hash_size, desc="outliers")
    guarded = fingerprints(protected["path"].tolist(), hash_size, desc="val, test and unknown")
    skipped = list(found.skipped)
    for path, (_, _, reason) in zip(photos, prints, strict=True):
        if reason:  # read once already, so only a file changed since
            skipped.append({"path": path.relative_to(out_dir).as_posix(), "reason": reason})

    rows, seen, repeats, remove = [], set(), 0, [out_dir / entry["path"] for entry in found.skipped]
    for path, origin, (digest, bits, reason) in zip(photos, origins, prints, strict=True):
        if reason:
            remove.append(path)
        elif digest in seen:
            repeats += 1
            remove.append(path)
        else:
            seen.add(digest)
            rows.append({"path": path.as_posix(), "origin": origin, "sha256": digest, "bits": bits})
    kept, dropped = _drop_duplicates_of(rows, protected["set"].tolist(), guarded, max_distance)
    kept_paths = {row["path"] for row in kept}
    remove += [Path(row["path"]) for row in rows if row["path"] not in kept_paths]
    for path in remove:
        path.unlink(missing_ok=True)
    manifest = pd.DataFrame([{key: row[key] for key in OUTLIER_COLUMNS} for row in kept], columns=OUTLIER_COLUMNS)
    return OutlierPool(manifest, skipped, repeats, dropped)


def fingerprints(paths: list, hash_size: int, desc: str) -> list[tuple[str, np.ndarray | None, str]]:
    """(sha256 of the bytes, perceptual-hash bits, "") of each photo, or ("", None, why it cannot be read);
    on every usable CPU when there are many."""
    jobs = [(str(path), hash_size) for path in paths]
    if len(jobs) < _PARALLEL_FROM or usable_cpus() == 1:
        return [_fingerprint(job) for job in tqdm(jobs, desc=desc, unit="photo")]
    with Pool(usable_cpus()) as pool:
        return list(tqdm(pool.imap(_fingerprint, jobs, chunksize=64), total=len(jobs), desc=desc, unit="photo"))


def _fingerprint(job: tuple[str, int]) -> tuple[str, np.ndarray | None, str]:
    path, hash_size = job
    try:
        data = read_image_file(path)
        return hashlib.sha256(data).hexdigest(), perceptual_hash(open_rgb(data), hash_size), ""
    except (ImageError, OSError) as exc:
        return "", None, str(exc)


def _drop_duplicates_of(rows: list[dict], sets: list[str], guarded: list, max_distance: int):
    """`rows` less those that are the same file as, or near, a protected photo; and how many each set cost."""
    usable = [(name, digest, bits) for name, (digest, bits, reason) in zip(sets, guarded, strict=True) if not reason]
    dropped = {name: 0 for name in dict.fromkeys(sets)}
    if not usable or not rows:
        return rows, dropped
    names = np.array([name for name, _, _ in usable])
    exact = {digest: name for name, digest, _ in usable}
    bits = np.array([b for _, _, b in usable], dtype=bool)
    kept = []
    for start in range(0, len(rows), _CHUNK_ROWS):
        chunk = rows[start : start + _CHUNK_ROWS]
        distances = hamming_distances(np.array([row["bits"] for row in chunk], dtype=bool), bits)
        for row, row_distances in zip(chunk, distances, strict=True):
            closest = int(row_distances.argmin())
            if row["sha256"] in exact:
                dropped[exact[row["sha256"]]] += 1
            elif row_distances[closest] <= max_distance:
                dropped[str(names[closest])] += 1
            else:
                kept.append(row)
    return kept, dropped
