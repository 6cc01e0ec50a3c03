"""The draw (data/outlier_source): the photos that are no fish, taken from `data.outlier_source` to fit the
unknown-photo detector on.

`draw_outlier_source` unpacks `data.outlier_source` (a zip, a folder or an https URL to a zip, in any folder layout:
Tiny ImageNet by default, ../shared/data/outliers-dev.zip on the dev machines), less the photos in a folder that
`data.outlier_exclude` names (fnmatch patterns of folder names, any case: a corpus's fish classes), at most
`data.outlier_photos` of the rest drawn by `base.seed`; the others are never unpacked. Its stage depends on those
settings and the code it runs alone, so a new dataset, new feedback or a new duplicate rule never downloads the
corpus again: `outlier_set` checks the draw against the fish and the measuring set.
"""

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated

import numpy as np

from fish_classifier.data.photo_source import gather_photos, skipped_lines
from fish_classifier.data.unzip import UnpackLimits
from fish_classifier.images import is_image_file
from fish_classifier.params import Rule, integer, text


class OutlierSetSettings(UnpackLimits):
    """What the outlier_source stage reads from params.yaml's `data`: the source, the folders of it to leave out, and
    (as the UnpackLimits it is) how much a zip of it may unpack to."""

    outlier_source: text(empty=True, meaning=": a zip, a folder or an https URL to a zip of photos that are no "
                                             "fish, or empty for none")
    outlier_exclude: Annotated[list[str], Rule("a list of folder-name patterns (fnmatch, any case), [] for none")]
    outlier_photos: integer(ge=0)


@dataclass
class OutlierDraw:
    photos: list[Path]  # the drawn photos, readable, under the draw's photos/ folder
    skipped: list[dict] = field(default_factory=list)  # path, reason: drawn files that cannot be read
    excluded: int = 0  # source photos in a folder that data.outlier_exclude names
    not_drawn: int = 0  # source photos over data.outlier_photos, left in the source

    def lines(self, source: str) -> list[str]:
        """What the outlier_source stage prints: what it drew from `source`, what it left out and why."""
        if not source:
            return ["data.outlier_source is empty: no photos that are no fish drawn"]
        return [f"{len(self.photos)} photos drawn from {source}: {self.excluded} left out by data.outlier_exclude, "
                f"{self.not_drawn} not drawn (data.outlier_photos), {len(self.skipped)} files skipped",
                *skipped_lines(self.skipped)]


@dataclass
class SourceDraw:
    """Which files of the source are unpacked: the photos (by name) outside the folders `exclude` names, at most
    `photos` of them (0: all) drawn by `seed`; the other files stay in the source, counted."""

    exclude: list[str]
    photos: int
    seed: int
    excluded: int = 0
    not_drawn: int = 0

    def __call__(self, names: list[str]) -> list[str]:
        candidates = [name for name in names if is_image_file(name)]
        kept = [name for name in candidates if not _excluded(PurePosixPath(name), self.exclude)]
        self.excluded = len(candidates) - len(kept)
        if self.photos and len(kept) > self.photos:
            rng = np.random.default_rng(self.seed)
            kept = [kept[i] for i in sorted(rng.choice(len(kept), self.photos, replace=False))]
        self.not_drawn = len(candidates) - self.excluded - len(kept)
        return kept


def draw_outlier_source(settings: OutlierSetSettings, out_dir: str | Path, *, seed: int) -> OutlierDraw:
    """Unpack (download first, for a URL) `settings.outlier_source` into `out_dir`/photos: its photos outside the
    folders `settings.outlier_exclude` names, at most `settings.outlier_photos` of them drawn by `seed`; the
    others are never unpacked. Raises DownloadError when the source is neither empty, a zip, a folder nor an https
    URL to a zip, or its download fails."""
    draw = SourceDraw(settings.outlier_exclude, settings.outlier_photos, seed)
    found = gather_photos(settings.outlier_source, Path(out_dir) / "photos", settings, "data.outlier_source",
                          "for no outlier source", choose=draw)
    for entry in found.skipped:
        (Path(out_dir) / entry["path"]).unlink(missing_ok=True)  # the draw's folder holds its photos alone
    return OutlierDraw(found.photos, found.skipped, draw.excluded, draw.not_drawn)


def _excluded(inside: PurePosixPath, patterns: list[str]) -> bool:
    """Whether a folder on the photo's path `inside` the source matches one of `patterns` (fnmatch, any case)."""
    folders = [part.lower() for part in inside.parts[:-1]]
    return any(fnmatch.fnmatchcase(folder, pattern.lower()) for folder in folders for pattern in patterns)
