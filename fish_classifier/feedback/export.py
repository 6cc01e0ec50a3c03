"""The reviewed photos written out as the pipeline reads them: `<label>/<sha256>.jpg`, one folder per label
(NOT_FISH's in `not-fish/`), built beside the target and renamed into place whole."""

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from fish_classifier.feedback.schema import FeedbackError, StoreUnavailable

_SHA256 = re.compile(r"[0-9a-f]{64}")


def write_export(out_dir: str | Path, labels_of: dict[str, list[str]], photo: Callable[[str], bytes]) -> dict:
    """Write each photo of `labels_of` (sha256 -> its labels, oldest first) under its latest label in `out_dir`,
    its JPEG from `photo(sha256)`.

    A photo given different labels is listed in the report's `relabelled`. A reader never sees half an export;
    an earlier export in `out_dir` is replaced, any other folder that is not empty is refused.
    Returns {"records", "photos", "labels": {label: photos}, "relabelled": [{sha256, labels, kept}]}.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not _is_export(out_dir):
        raise FeedbackError(f"{out_dir} exists and is not an earlier feedback export; give a new or empty folder")
    for label in {labels[-1] for labels in labels_of.values()}:
        if label in ("", ".", "..") or "/" in label or "\\" in label or "\0" in label:
            raise FeedbackError(f"label {label!r} cannot be a folder name; relabel or reject its records")
    report = {"records": sum(map(len, labels_of.values())), "photos": len(labels_of), "labels": {}, "relabelled": []}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    scratch = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        scratch.mkdir()
        for sha256, labels in labels_of.items():
            kept = labels[-1]
            if len(set(labels)) > 1:
                report["relabelled"].append({"sha256": sha256, "labels": labels, "kept": kept})
            (scratch / kept).mkdir(exist_ok=True)
            (scratch / kept / f"{sha256}.jpg").write_bytes(photo(sha256))
            report["labels"][kept] = report["labels"].get(kept, 0) + 1
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        if out_dir.exists():
            out_dir.rename(old)
        scratch.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        raise StoreUnavailable(f"cannot write the export to {out_dir}: {exc.strerror or exc}") from exc
    report["labels"] = dict(sorted(report["labels"].items()))
    return report


def _is_export(folder: Path) -> bool:
    """Whether `folder` holds nothing, or only label folders of <sha256>.jpg files (what write_export writes)."""
    if not folder.is_dir():
        return False
    for entry in folder.iterdir():
        if not entry.is_dir() or entry.is_symlink():
            return False
        for photo in entry.iterdir():
            if not (photo.is_file() and photo.suffix == ".jpg" and _SHA256.fullmatch(photo.stem)):
                return False
    return True
