"""The outlier pool (data/outliers): photos that are no fish, to fit or train the unknown-photo detector on.

It gathers the photos drawn from `data.outlier_source` (data/outlier_source, `outlier_draw`) and the photos users
marked as no fish (data/feedback/not-fish), each read with the same readers as the fish.

What fits the detector must be no fish and must not be what scores the models or measures the detector. A drawn
photo that is the same file (sha256 of the bytes, as data/manifest.csv keeps it) as a fish photo of any split or
as a photo of the measuring set (data/unknown) is refused, the whole stage with it: the source is wrong, and
someone must remove those photos or exclude their folders. The pool is de-duplicated by sha256, and the photos
that are only near duplicates (perceptual hash within `prepare.near_duplicate_distance` bits) of a val, test or
measuring-set photo, and the feedback photos that are the same file as one, are dropped and counted: a user's
mark should not stop the pipeline. The pool never feeds data/unknown.

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
from fish_classifier.data.leakage import hamming_distances, perceptual_hash
from fish_classifier.data.manifest import scored_split
from fish_classifier.data.photo_source import skipped_lines
from fish_classifier.images import ImageError, open_rgb, read_image_file

OUTLIER_COLUMNS = ["path", "origin", "sha256"]
OUTLIER_SOURCE, FEEDBACK = "outlier_source", "feedback"  # origins
_PARALLEL_FROM = 256  # photos: fewer are hashed in this process, a pool costs more than it saves
_CHUNK_ROWS = 2048  # pool photos compared at once against the protected ones: bounds the distance matrix
_SHOWN = 5  # offending photos a refusal names


class OutlierSourceError(ValueError):
    """`data.outlier_source` holds photos that are fish photos or photos of the measuring set."""


@dataclass
class OutlierPool:
    manifest: pd.DataFrame  # OUTLIER_COLUMNS
    skipped: list[dict] = field(default_factory=list)  # path, reason
    repeats: int = 0  # photos that were the same file as one kept
    dropped: dict[str, int] = field(default_factory=dict)  # {protected set: photos dropped as its duplicates}

    def lines(self) -> list[str]:
        """What the outliers stage prints: the pool's size by origin, what was left out and why, the skipped files."""
        origins = ", ".join(f"{n} from {origin}" for origin, n in self.manifest["origin"].value_counts().items())
        dropped = ", ".join(f"{n} of {group}" for group, n in self.dropped.items())
        return [f"{len(self.manifest)} outlier photos{f' ({origins})' if origins else ''}, {self.repeats} repeats "
                f"kept once; dropped as duplicates: {dropped}; {len(self.skipped)} files skipped",
                *skipped_lines(self.skipped)]


def collect_outlier_pool(drawn: str | Path, not_fish: pd.DataFrame, fish: pd.DataFrame, unknown: pd.DataFrame,
                         out_dir: str | Path, *, hash_size: int, max_distance: int) -> OutlierPool:
    """Copy the draw's photos (`drawn`/photos, from `draw_outlier_source`) into `out_dir`/photos and the feedback's
    not-fish photos (`not_fish`: path, label, sha256) into `out_dir`/feedback, keep each photo once, and drop
    (files and all) the near duplicates of the val and test photos of `fish` (the fish manifest: path, split,
    sha256, augmented) and of `unknown` (the measuring set: path), and the feedback photos that are the same file as
    one.

    Raises OutlierSourceError when a drawn photo is the same file as a fish photo or a measuring-set photo.
    """
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir / "photos", ignore_errors=True)
    if (Path(drawn) / "photos").is_dir():
        shutil.copytree(Path(drawn) / "photos", out_dir / "photos")
    else:
        (out_dir / "photos").mkdir(parents=True)
    sources = sorted(path for path in (out_dir / "photos").rglob("*") if path.is_file())
    feedback_dir = out_dir / FEEDBACK
    shutil.rmtree(feedback_dir, ignore_errors=True)
    feedback_dir.mkdir(parents=True)
    copied = []
    for entry in not_fish.itertuples():
        target = feedback_dir / Path(entry.path).name  # <sha256><suffix>: one name per photo
        shutil.copyfile(entry.path, target)
        copied.append(target)
    photos = [*sources, *copied]
    origins = [OUTLIER_SOURCE] * len(sources) + [FEEDBACK] * len(copied)
    protected = pd.concat([*(scored_split(fish, split)[["path"]].assign(set=split) for split in ("val", "test")),
                           unknown[["path"]].assign(set="unknown")], ignore_index=True)
    prints = fingerprints(photos, hash_size, desc="outliers")
    guarded = fingerprints(protected["path"].tolist(), hash_size, desc="val, test and unknown")
    measuring = {digest: path for path, name, (digest, _, reason) in
                 zip(protected["path"], protected["set"], guarded, strict=True) if name == "unknown" and not reason}
    inside = [(path.relative_to(out_dir / "photos"), digest)
              for path, (digest, _, _) in zip(sources, prints[: len(sources)], strict=True)]
    _refuse_overlap(inside, dict(zip(fish["sha256"], fish["path"])), measuring)
    skipped = []
    for path, (_, _, reason) in zip(photos, prints, strict=True):
        if reason:  # read once already, so only a file changed since
            skipped.append({"path": path.relative_to(out_dir).as_posix(), "reason": reason})

    rows, seen, repeats, remove = [], set(), 0, []
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


def _refuse_overlap(sources: list[tuple[Path, str]], fish: dict[str, str], measuring: dict[str, str]) -> None:
    """Raise OutlierSourceError when a source photo (path inside the source, sha256) is the same file as a photo
    of `fish` or of `measuring` ({sha256: path}), naming a few on both sides and the way out."""
    clashes = {"the fish (data/manifest.csv)": [], "the measuring set (data/unknown)": []}
    for inside, digest in sources:
        for (group, found), known in zip(clashes.items(), (fish, measuring)):
            if digest and digest in known:
                found.append((inside, known[digest]))
    if not any(clashes.values()):
        return
    counts = " and ".join(f"{_photos(len(found))} of {group}" for group, found in clashes.items() if found)
    pairs = [pair for found in clashes.values() for pair in found]
    shown = "; ".join(f"{inside.as_posix()} is {known}" for inside, known in pairs[:_SHOWN])
    more = f" (and {len(pairs) - _SHOWN} more)" if len(pairs) > _SHOWN else ""
    folders = sorted({inside.parent.as_posix() for inside, _ in pairs if inside.parent.name})
    raise OutlierSourceError(
        f"data.outlier_source holds {counts}, the same files by sha256: {shown}{more}. "
        "The outlier pool fits the unknown-photo detector, so it must hold no fish and none of the photos that "
        "measure it. Remove those photos from the source, or leave their folders out with data.outlier_exclude"
        + (f" (their folders: {', '.join(folders[:_SHOWN])})" if folders else ""))


def _photos(count: int) -> str:
    return f"{count} photo{'' if count == 1 else 's'}"


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
