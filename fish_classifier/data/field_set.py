"""The field set (`data.field_source`): photos of the dataset's species taken outside its studio, to measure
how well a model names fish photographed anywhere.

A zip or folder laid out as `<class folder>/<photo>` (at any depth: a photo's class is the folder it lies
in), with the dataset's own class folder names. It never trains a model and never chooses one, nor a
temperature or a threshold: `evaluate` and `select` only report on it.
"""

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fish_classifier.data.download import UnpackLimits
from fish_classifier.data.manifest import DatasetError
from fish_classifier.data.photo_source import gather_photos
from fish_classifier.params import text

FIELD_COLUMNS = ["path", "label"]


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
    DownloadError when `source` is neither a zip nor a folder.
    """
    photos = Path(out_dir) / "photos"
    found = gather_photos(source, photos, limits, "data.field_source", "to skip the field figures")
    rows = [{"path": path.as_posix(), "label": path.parent.name} for path in found.photos]
    frame = pd.DataFrame(rows, columns=FIELD_COLUMNS)
    strangers = sorted(set(frame["label"]) - set(labels))
    if strangers:
        raise DatasetError(f"data.field_source has folders that are no class of the dataset: {', '.join(strangers)}; "
                           f"a photo's folder must be one of: {', '.join(labels)}")
    return FieldSet(frame, found.skipped)
