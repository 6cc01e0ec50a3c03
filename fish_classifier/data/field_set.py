"""The field set (`data.field_source`): photos of the dataset's species taken outside its studio, to measure
how well a model names fish photographed anywhere.

A zip or folder laid out as `<class folder>/<photo>` (at any depth: a photo's class is the innermost folder
above it named as a class, so `trout/anglers/1.jpg` is a trout), with the dataset's own class folder names. It never trains a model and never chooses one, nor a
temperature or a threshold: `evaluate` and `select` only report on it.

The users' feedback photos that their hash sends to the field split (data/feedback/field) join it, with
`origin` feedback beside the source's `field_source`.
"""

from dataclasses import dataclass, field
from pathlib import Path

import shutil

import pandas as pd

from fish_classifier.data.unzip import UnpackLimits
from fish_classifier.data.manifest import DatasetError
from fish_classifier.data.photo_source import gather_photos
from fish_classifier.params import text

FIELD_COLUMNS = ["path", "label", "origin"]
FIELD_SOURCE, FEEDBACK = "field_source", "feedback"  # origins


class FieldSetSettings(UnpackLimits):
    """What the field stage reads from params.yaml's `data`: the set's source, and how much a zip may unpack to."""

    field_source: text(empty=True, meaning=": a zip or folder of <class folder>/<photo>, or empty for none")


@dataclass
class FieldSet:
    manifest: pd.DataFrame  # path, label
    skipped: list[dict] = field(default_factory=list)  # path, reason


def collect_field_set(source: str, out_dir: str | Path, limits: UnpackLimits, labels: list[str]) -> FieldSet:
    """Copy (a folder) or unpack (a zip) `source` into `out_dir`/photos and list its readable photos with their
    class. An empty `source` gives an empty set.

    Raises DatasetError naming the folders that are none of `labels` (the classes of data/classes.json), and
    DownloadError when `source` is neither a zip, a folder nor an https URL to a zip.
    """
    photos = Path(out_dir) / "photos"
    found = gather_photos(source, photos, limits, "data.field_source", "to skip the field figures")
    rows, strangers = [], set()
    for path in found.photos:
        folders = path.relative_to(photos).parts[:-1]
        label = next((name for name in reversed(folders) if name in labels), None)
        if label is None:
            strangers.add("/".join(folders) or "(the top folder)")
        rows.append({"path": path.as_posix(), "label": label, "origin": FIELD_SOURCE})
    if strangers:
        raise DatasetError(f"data.field_source has photos in no class folder: {', '.join(sorted(strangers))}; "
                           f"a photo must lie in a folder named as a class: {', '.join(labels)}")
    return FieldSet(pd.DataFrame(rows, columns=FIELD_COLUMNS), found.skipped)


def add_feedback_photos(field_set: FieldSet, feedback: pd.DataFrame, out_dir: str | Path) -> FieldSet:
    """`field_set` with the feedback photos bound for the field split (data/feedback/field/manifest.csv: path, label,
    sha256) copied into `out_dir`/feedback/<label>/ and listed after the source's, `origin` feedback."""
    into = Path(out_dir) / FEEDBACK
    shutil.rmtree(into, ignore_errors=True)
    rows = []
    for entry in feedback.itertuples():
        target = into / entry.label / Path(entry.path).name  # <sha256><suffix>: one name per photo
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(entry.path, target)
        rows.append({"path": target.as_posix(), "label": entry.label, "origin": FEEDBACK})
    if not rows:
        return field_set
    added = pd.DataFrame(rows, columns=FIELD_COLUMNS)
    return FieldSet(pd.concat([field_set.manifest, added], ignore_index=True), field_set.skipped)
