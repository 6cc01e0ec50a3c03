"""The unknown-photo set (`data.unknown_source`): photos that are none of the species, to measure the detector on.

A zip or folder laid out as

    not-fish/        photos that are no fish at all: the detector should flag them
    fish-elsewhere/  fish photos from another source, of the kinds the dataset's catch-all classes hold:
                     they should get one of those labels and not be flagged

(at any depth; a photo in neither folder counts as not-fish). Each photo is read with the same readers
as the fish (`images.open_rgb`); one that cannot be read is skipped with its reason. The set is never
used to fit or tune the detector, only to measure it.
"""

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fish_classifier.data.unzip import UnpackLimits
from fish_classifier.data.photo_source import gather_photos, skipped_lines
from fish_classifier.params import text

# The set's groups: photos to flag, and fish that should pass.
NOT_FISH = "not-fish"
FISH_ELSEWHERE = "fish-elsewhere"
GROUPS = (NOT_FISH, FISH_ELSEWHERE)


class UnknownSetSettings(UnpackLimits):
    """What the unknowns stage reads from params.yaml's `data`: the set's source, and (as the
    UnpackLimits it is) how much a zip of it may unpack to."""

    unknown_source: text(empty=True,
                         meaning=": a zip or folder of photos that are none of the species, or empty for none")


@dataclass
class UnknownSet:
    manifest: pd.DataFrame  # path, group
    skipped: list[dict] = field(default_factory=list)  # path, reason

    def lines(self, source: str) -> list[str]:
        """What the unknowns stage prints: the photos of `source` by group, then the skipped files."""
        if not source:
            return ["data.unknown_source is empty: no unknown photos, select will skip the unknown-photo figures"]
        counts = ", ".join(f"{group} {n}" for group, n in self.manifest["group"].value_counts().items())
        return [f"{len(self.manifest)} unknown-set photos from {source} ({counts}), {len(self.skipped)} skipped",
                *skipped_lines(self.skipped)]


def collect_unknown_set(source: str, out_dir: str | Path, limits: UnpackLimits) -> UnknownSet:
    """Copy (a folder) or unpack (a zip) `source` into `out_dir`/photos and list its readable photos.

    An empty `source` gives an empty set. Raises DownloadError when the source is missing or not a zip or folder.
    """
    out_dir = Path(out_dir)
    photos = out_dir / "photos"
    found = gather_photos(source, photos, limits, "data.unknown_source", "to skip the unknown-photo figures")
    rows = [{"path": path.as_posix(),
             "group": FISH_ELSEWHERE if FISH_ELSEWHERE in path.relative_to(photos).parts else NOT_FISH}
            for path in found.photos]
    return UnknownSet(pd.DataFrame(rows, columns=["path", "group"]), found.skipped)
