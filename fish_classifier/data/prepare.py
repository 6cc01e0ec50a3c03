"""Turning `data/raw` into clean RGB images and the manifest that indexes them.

Every file under raw/<split>/<label>/ is decoded with `images.open_rgb`. Files that
will not decode are reported with the reason and left out; nothing else about a file stops the run.
Every class needs usable images in train and val (validation chooses the model, its temperature and its
thresholds), and test needs images: a dataset short of them is refused. A class that test alone has no
usable image of gets a warning.
Kept images land in prepared/<split>/<label>/: a byte copy when the file already
decodes to plain RGB, else the normalised RGB pixels as a lossless PNG.
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

from fish_classifier.data.leakage import perceptual_hash
from fish_classifier.data.manifest import MANIFEST_COLUMNS, DatasetError, check_scored_splits
from fish_classifier.images import IMAGE_FORMATS, ImageError, open_rgb, read_image_file
from fish_classifier.params import Rule, Section, integer
from fish_classifier.splits import SPLITS

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
            data = read_image_file(path)
            image = open_rgb(data)
        except ImageError as exc:
            skipped.append({**where, "reason": str(exc)})
            continue
        digest = hashlib.sha256(data).hexdigest()
        plain = _is_plain_rgb(data)
        target = _target_path(prepared_dir / split / inside, plain=plain, digest=digest, taken=taken)
        target.parent.mkdir(parents=True, exist_ok=True)
        if plain:
            target.write_bytes(data)
        else:
            image.save(target, format="PNG")
        rows.append(
            {
                "path": _relative(target, repo_root),
                "split": split,
                "label": label,
                "sha256": digest,
                "width": image.width,
                "height": image.height,
                "augmented": False,
                "source": "",
            }
        )
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
