"""Turning `data/raw` into clean RGB images and the manifest that indexes them.

Every file under raw/<split>/<label>/ is decoded with `images.open_rgb`. Files that
will not decode are reported with the reason and left out; nothing else about a file stops the run.
Every class needs usable images in train and val (validation chooses the model, its temperature and its
thresholds), and test needs images: a dataset short of them is refused. A class that test alone has no
usable image of gets a warning.
Kept images land in prepared/<split>/<label>/: a byte copy when the file already
decodes to plain RGB, else the normalised RGB pixels as a lossless PNG.

The users' feedback photos bound for train (data/feedback/train) are folded in after the dataset, through the
same reading (`origin` feedback in the manifest); one that is an exact or near duplicate of a val or test photo
is dropped, so that no user photo flatters a score, and listed with its pair.
"""

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from fish_classifier.data.leakage import hamming_distances, perceptual_hash
from fish_classifier.data.manifest import DATASET, FEEDBACK, MANIFEST_COLUMNS, DatasetError, check_scored_splits
from fish_classifier.images import IMAGE_FORMATS, ImageError, open_rgb, read_image_file
from fish_classifier.layout import SPLITS
from fish_classifier.params import Rule, Section, integer

_EXIF_ORIENTATION = 0x0112


class PrepareSettings(Section):
    """params.yaml's `prepare`."""

    near_duplicate_distance: integer(ge=0)  # perceptual-hash Hamming distance counted as a near duplicate
    hash_size: integer(ge=2)  # imagehash.phash refuses a smaller one
    display_names: Annotated[dict[str, str], Rule("a mapping of label: display name ({} for none)")]
    duplicate_pairs_shown: integer(ge=1)  # the closest near-duplicate pairs drawn in data/near_duplicates.png


@dataclass
class PreparedDataset:
    manifest: pd.DataFrame  # one row per kept image, MANIFEST_COLUMNS
    skipped: list[dict]  # {"path", "split", "label", "reason"} per file left out
    hashes: np.ndarray  # perceptual-hash bits, one row per manifest row
    warnings: list[str]  # one line per class that test has no usable image of


def prepare_images(
    raw_dir: str | Path,
    prepared_dir: str | Path,
    labels: list[str],
    *,
    hash_size: int,
    repo_root: str | Path = ".",
) -> PreparedDataset:
    """Decode, normalise and copy every image of `raw_dir` into `prepared_dir`.

    `labels` are the class folders (from `manifest.find_classes`); manifest paths are
    POSIX and relative to `repo_root`. Raises DatasetError when a class is left with
    no usable training image, when val lacks a class, and when test has no image (`check_scored_splits`).
    """
    raw_dir, prepared_dir = Path(raw_dir), Path(prepared_dir)
    known = set(labels)
    files = [
        (split, path) for split in SPLITS for path in sorted(p for p in (raw_dir / split).rglob("*") if p.is_file())
    ]
    rows, skipped, hashes, taken = [], [], [], set()
    for split, path in tqdm(files, desc="prepare", unit="image"):
        inside = path.relative_to(raw_dir / split)
        label = inside.parts[0] if len(inside.parts) > 1 else None
        where = {"path": _relative(path, repo_root), "split": split, "label": label or ""}
        if label not in known:
            skipped.append({**where, "reason": "not inside a class folder"})
            continue
        try:
            data, image = _decode(path)
        except ImageError as exc:
            skipped.append({**where, "reason": str(exc)})
            continue
        digest = hashlib.sha256(data).hexdigest()
        rows.append(_keep(data, image, prepared_dir / split / inside, digest, taken, repo_root,
                          split=split, label=label, origin=DATASET))
        hashes.append(perceptual_hash(image, hash_size))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    empty = sorted(known - set(manifest.loc[manifest["split"] == "train", "label"]))
    if empty:
        raise DatasetError(
            f"train/{empty[0]} has no usable image (see the skipped files); every class needs training images"
        )
    for split in ("val", "test"):
        try:
            check_scored_splits(manifest, labels, splits=(split,))
        except DatasetError as exc:
            message = str(exc)
            left_out = [row for row in skipped if row["split"] == split]
            if left_out:  # the report that lists them is not written for a refused dataset
                first = left_out[0]
                message += f" ({len(left_out)} of its files left out, e.g. {first['path']}: {first['reason']})"
            raise DatasetError(message) from None
    bits = np.array(hashes, dtype=bool).reshape(len(rows), hash_size * hash_size)
    warnings = _untested_classes(manifest, labels)
    return PreparedDataset(manifest=manifest, skipped=skipped, hashes=bits, warnings=warnings)


FEEDBACK_PAIRS = tuple(f"{FEEDBACK}-{split}" for split in ("val", "test"))  # what a feedback photo is checked against


@dataclass
class FeedbackFolded:
    dataset: PreparedDataset  # the dataset with the kept feedback photos as train rows (and their skipped files)
    report: dict  # photos, skipped_files, dropped_photos, duplicate_pairs: {pair: count}, pairs: {pair: [...]}


def fold_in_feedback(prepared: PreparedDataset, feedback: pd.DataFrame, prepared_dir: str | Path, *, hash_size: int,
                     max_distance: int, repo_root: str | Path = ".") -> FeedbackFolded:
    """Add `feedback` (data/feedback/train/manifest.csv: path, label, sha256) to `prepared` as train photos.

    Each is read as the dataset's photos are (an unreadable one is skipped with its reason), and dropped when it
    is the same file as (sha256), or within `max_distance` bits of the perceptual hash of, a val or test photo.
    A kept one lands in prepared_dir/train/<label>/feedback-<sha256[:16]>.
    """
    manifest = prepared.manifest
    known = set(manifest.loc[manifest["split"] == "train", "label"])  # every class has train photos (prepare_images)
    scored = {split: manifest.index[(manifest["split"] == split).to_numpy()].to_numpy() for split in ("val", "test")}
    rows, hashes, skipped, taken = [], [], [], set()
    pairs = {pair: [] for pair in FEEDBACK_PAIRS}
    dropped = 0
    for entry in tqdm(feedback.itertuples(), total=len(feedback), desc="feedback", unit="image"):
        where = {"path": entry.path, "split": "train", "label": entry.label}
        if entry.label not in known:
            skipped.append({**where, "reason": "not a species of the dataset"})
            continue
        try:
            data, image = _decode(Path(repo_root) / entry.path)
        except ImageError as exc:
            skipped.append({**where, "reason": str(exc)})
            continue
        digest = hashlib.sha256(data).hexdigest()
        bits = perceptual_hash(image, hash_size)
        found = _duplicates_of(entry.path, digest, bits, manifest, prepared.hashes, scored, max_distance)
        if found:
            for pair, match in found:
                pairs[pair].append(match)
            dropped += 1
            continue
        wanted = Path(prepared_dir) / "train" / entry.label / f"{FEEDBACK}-{digest[:16]}{Path(entry.path).suffix}"
        rows.append(_keep(data, image, wanted, digest, taken, repo_root, split="train", label=entry.label,
                          origin=FEEDBACK))
        hashes.append(bits)
    added = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    dataset = PreparedDataset(
        manifest=pd.concat([manifest, added], ignore_index=True) if rows else manifest,
        skipped=prepared.skipped + skipped,
        hashes=np.concatenate([prepared.hashes, np.array(hashes, dtype=bool).reshape(len(rows), -1)])
        if rows else prepared.hashes,
        warnings=prepared.warnings,
    )
    report = {"photos": len(rows), "skipped_files": len(skipped), "dropped_photos": dropped,
              "duplicate_pairs": {pair: len(found) for pair, found in pairs.items()}, "pairs": pairs}
    return FeedbackFolded(dataset, report)


def prepare_report(classes: list[dict], dataset: PreparedDataset, leaks: dict, feedback: dict) -> dict:
    """data/prepare_report.json from the classes, the prepared dataset, `leakage.find_leaks`'s `leaks` and
    FeedbackFolded's `feedback` report. Numbers first: `dvc metrics show` lists them and leaves the long lists out."""
    counts = dataset.manifest["split"].value_counts()
    return {
        "classes": len(classes),
        "images": {split: int(counts.get(split, 0)) for split in SPLITS},
        "skipped_files": len(dataset.skipped),
        "exact_duplicates": leaks["exact_duplicates"],
        "near_duplicates": leaks["near_duplicates"],
        "feedback": {key: value for key, value in feedback.items() if key != "pairs"},
        "warnings": dataset.warnings,
        "skipped": dataset.skipped,
        "exact_duplicate_pairs": leaks["exact_duplicate_pairs"],
        "near_duplicate_pairs": leaks["near_duplicate_pairs"],
        "feedback_dropped_pairs": feedback["pairs"],  # feedback photos left out: they duplicate val or test
    }


def summary_lines(report: dict, feedback_offered: int) -> list[str]:
    """What the stage prints from its `report`: the counts, the leakage, the feedback (when `feedback_offered`
    photos were), and each warning."""
    lines = [f"{sum(report['images'].values())} images in {report['classes']} classes {report['images']}, "
             f"{report['skipped_files']} skipped",
             f"leakage: exact {report['exact_duplicates']}, near {report['near_duplicates']}"]
    if feedback_offered:
        folded = report["feedback"]
        lines.append(f"feedback: {folded['photos']} of {feedback_offered} photos join train, "
                     f"{folded['dropped_photos']} dropped as duplicates of val or test photos, "
                     f"{folded['skipped_files']} unreadable")
    return lines + [f"warning: {warning}" for warning in report["warnings"]]


def _duplicates_of(path, digest, bits, manifest, hashes, scored, max_distance) -> list[tuple[str, dict]]:
    """(pair, {feedback: path, <split>: path, distance, exact}) for each val or test photo that `path` duplicates."""
    found, sha, paths = [], manifest["sha256"].to_numpy(), manifest["path"].to_numpy()
    for split, rows in scored.items():
        if not len(rows):
            continue
        distances = hamming_distances(bits[None, :], hashes[rows])[0]
        exact = sha[rows] == digest
        for i in np.nonzero(exact | (distances <= max_distance))[0]:
            found.append((f"{FEEDBACK}-{split}", {FEEDBACK: path, split: paths[rows[i]],
                                                  "distance": int(distances[i]), "exact": bool(exact[i])}))
    return found


def _decode(path: Path) -> tuple[bytes, Image.Image]:
    data = read_image_file(path)
    return data, open_rgb(data)


def _keep(data: bytes, image: Image.Image, wanted: Path, digest: str, taken: set, repo_root, *, split: str,
          label: str, origin: str) -> dict:
    """Write one kept image under `wanted` (a byte copy when plain RGB, else a PNG) and return its manifest row."""
    plain = _is_plain_rgb(data)
    target = _target_path(wanted, plain=plain, digest=digest, taken=taken)
    target.parent.mkdir(parents=True, exist_ok=True)
    if plain:
        target.write_bytes(data)
    else:
        image.save(target, format="PNG")
    return {"path": _relative(target, repo_root), "split": split, "label": label, "sha256": digest,
            "width": image.width, "height": image.height, "augmented": False, "source": "", "origin": origin}


def _untested_classes(manifest: pd.DataFrame, labels: list[str]) -> list[str]:
    """A warning per class with no usable image in test: the model learns it, but no test figure measures it."""
    tested = set(manifest.loc[manifest["split"] == "test", "label"])
    return [f"class {label!r} has no usable image in test/, so no test score covers it"
            for label in labels if label not in tested]


def _is_plain_rgb(data: bytes) -> bool:
    """Whether the file decodes to its own pixels as-is: 8-bit RGB with no EXIF rotation to apply."""
    with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
        return image.mode == "RGB" and image.getexif().get(_EXIF_ORIENTATION, 1) == 1


def _target_path(wanted: Path, *, plain: bool, digest: str, taken: set) -> Path:
    target = wanted if plain else wanted.with_suffix(".png")
    if target in taken:  # e.g. fish.jpg and fish.png, both re-encoded to fish.png
        target = target.with_name(f"{target.stem}-{digest[:8]}{target.suffix}")
    taken.add(target)
    return target


def _relative(path: Path, repo_root: str | Path) -> str:
    return Path(os.path.relpath(path, repo_root)).as_posix()
