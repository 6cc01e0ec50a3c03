"""The users' corrections (`data.feedback_source`), split into the three places the pipeline takes them.

A source is a folder or a zip in the layout `fish-classifier feedback export` writes (`<species>/<photo>` and
`not-fish/<photo>`, at any depth: a photo's label is the innermost folder above it named as a species or
`not-fish`), or a database URL (`sqlite:///feedback/feedback.db`, `postgresql://...`) whose accepted records
are exported first. Each photo is read with the same readers as the fish (one that cannot be read is skipped
with its reason), and is known by its sha256 (`photo_key`: the store's key, as the export names the file, else
that of its bytes): the same photo twice with one label is one photo, with two labels an error naming both files.

A fish photo goes by its hash to train (`prepare` folds it in) or to the field split (`field` scores it, it
never trains): train when int(sha256[:8], 16) / 2**32 < `data.feedback_train_share`. That depends on the photo
alone, so adding photos never moves one already there. Not-fish photos go to the outlier pool (stage `outliers`).
Each part is its own folder with its own manifest.csv (path, label, sha256), so each consumer re-runs only
when its part changes.
"""

import hashlib
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fish_classifier.data.scratch import scratch_folder
from fish_classifier.data.unzip import DownloadError, UnpackLimits
from fish_classifier.data.manifest import FEEDBACK_COLUMNS, DatasetError
from fish_classifier.data.photo_source import gather_photos, skipped_lines
from fish_classifier.feedback.store import NOT_FISH, FeedbackError, FeedbackStore
from fish_classifier.params import number, text

TRAIN, FIELD = "train", "field"
PARTS = (TRAIN, FIELD, NOT_FISH)  # data/feedback/<part>
STORE_NAME = re.compile(r"[0-9a-f]{64}")  # how `feedback export` names a photo: its sha256 in the store
_DATABASE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # a SQLAlchemy URL: dialect[+driver]://...


class FeedbackSetSettings(UnpackLimits):
    """What the feedback stage reads from params.yaml's `data`: the source, the share of its fish photos that
    trains, and (as the UnpackLimits it is) how much a zip of it may unpack to."""

    feedback_source: text(empty=True, meaning=": a folder or zip of <species>/<photo> and not-fish/<photo>, "
                                              "a database URL (sqlite:///..., postgresql://...), or empty for none")
    feedback_train_share: number(ge=0, le=1, meaning=": the share of feedback fish photos that trains")


@dataclass
class FeedbackSet:
    parts: dict[str, pd.DataFrame]  # train, field, not-fish: FEEDBACK_COLUMNS each
    skipped: list[dict] = field(default_factory=list)  # path (in the source), reason
    repeats: list[dict] = field(default_factory=list)  # path (in the source), same_as: the one kept

    def lines(self, source: str) -> list[str]:
        """What the feedback stage prints: the photos of `source` by part, the skipped files and the repeats."""
        if not source:
            return ["data.feedback_source is empty: no feedback photos"]
        counts = ", ".join(f"{part} {len(frame)}" for part, frame in self.parts.items())
        return [f"feedback from {source}: {counts}; {len(self.skipped)} files skipped, "
                f"{len(self.repeats)} repeated photos kept once", *skipped_lines(self.skipped),
                *(f"  {entry['path']} is the same photo as {entry['same_as']}: kept once" for entry in self.repeats)]


def is_database_url(source: str) -> bool:
    return bool(_DATABASE_URL.match(source))


def photo_key(path: Path) -> str:
    """A photo's identity: the store's own key when the file comes from `feedback export` (named <sha256>.jpg,
    the sha256 of the photo as the user uploaded it), else the sha256 of its bytes. The store's key keeps a
    photo on its side of the split whichever JPEG encoder wrote the exported copy."""
    if STORE_NAME.fullmatch(path.stem):
        return path.stem
    return hashlib.sha256(path.read_bytes()).hexdigest()


def feedback_split(sha256: str, train_share: float) -> str:
    """Where a fish photo goes, by its hash alone: train or field."""
    return TRAIN if int(sha256[:8], 16) / 2**32 < train_share else FIELD


def collect_feedback(source: str, out_dir: str | Path, settings: FeedbackSetSettings, labels: list[str]) -> FeedbackSet:
    """Gather `source`'s photos into `out_dir`/{train,field,not-fish}/ (each `<label>/<sha256><suffix>`, and a
    manifest.csv). An empty `source` gives three empty parts.

    `labels` are the dataset's species. Raises DatasetError for a folder that is none of them nor `not-fish`,
    and for one photo given two labels; DownloadError when `source` is neither a folder, a zip nor a database URL.
    """
    out_dir = Path(out_dir)
    for part in PARTS:
        shutil.rmtree(out_dir / part, ignore_errors=True)
    with scratch_folder(out_dir, ".feedback-tmp-") as scratch:
        folder = source
        if is_database_url(source):
            folder = str(_export_accepted(source, Path(scratch) / "export"))
        photos = Path(scratch) / "photos"
        found = gather_photos(folder, photos, settings, "data.feedback_source", "for no feedback")
        skipped = [{**entry, "path": str(Path(entry["path"]).relative_to("photos"))} for entry in found.skipped]
        kept, repeats = _label_and_deduplicate(found.photos, photos, labels)
        rows = {part: [] for part in PARTS}
        for (digest, label), path in kept.items():
            part = NOT_FISH if label == NOT_FISH else feedback_split(digest, settings.feedback_train_share)
            target = out_dir / part / ("" if part == NOT_FISH else label) / f"{digest}{path.suffix.lower()}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            rows[part].append({"path": target.as_posix(), "label": label, "sha256": digest})
    parts = {}
    for part in PARTS:
        (out_dir / part).mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(sorted(rows[part], key=lambda row: row["path"]), columns=FEEDBACK_COLUMNS)
        frame.to_csv(out_dir / part / "manifest.csv", index=False)
        parts[part] = frame
    return FeedbackSet(parts, skipped, repeats)


def _label_and_deduplicate(paths: list[Path], root: Path, labels: list[str]):
    """{(sha256, label): path} of each photo once, and the repeats; refuses stray folders and two labels."""
    known = set(labels) | {NOT_FISH}
    strangers, first_of, kept, repeats = set(), {}, {}, []
    for path in paths:
        folders = path.relative_to(root).parts[:-1]
        label = next((name for name in reversed(folders) if name in known), None)
        if label is None:
            strangers.add("/".join(folders) or "(the top folder)")
            continue
        digest = photo_key(path)
        shown = path.relative_to(root).as_posix()
        if digest in first_of:
            earlier, earlier_label = first_of[digest]
            if earlier_label != label:
                raise DatasetError(
                    f"data.feedback_source gives one photo two labels: {earlier} ({earlier_label}) and {shown} "
                    f"({label}) are the same file (sha256 {digest[:12]}...); remove the wrong one, or reject its record")
            repeats.append({"path": shown, "same_as": earlier})
            continue
        first_of[digest] = (shown, label)
        kept[(digest, label)] = path
    if strangers:
        raise DatasetError(
            f"data.feedback_source has photos in folders that are no species: {', '.join(sorted(strangers))}; "
            f"a photo must lie in a folder named as a species ({', '.join(labels)}) or {NOT_FISH}")
    return kept, repeats


def _export_accepted(url: str, into: Path) -> Path:
    """The accepted records of the feedback store at `url`, exported into `into` in the folder layout."""
    database = _sqlite_file(url)
    if database is not None and not database.is_file():  # the store would make an empty one: a typo reads as no feedback
        raise DownloadError(f"data.feedback_source {url!r}: there is no feedback database at {database}; "
                            "point it at the app's store (sqlite:///feedback/feedback.db by default)")
    try:
        with FeedbackStore(url) as store:
            store.export(into, status="accepted")
    except FeedbackError as exc:  # a wrong URL, a server down, a missing driver: the store's line says which
        raise DownloadError(f"data.feedback_source: {exc}") from exc
    into.mkdir(parents=True, exist_ok=True)
    return into


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database, or SQLite in memory)."""
    match = re.match(r"^sqlite(?:\+\w+)?:///(.*?)(?:\?.*)?$", url)
    return Path(match.group(1)) if match and match.group(1) not in ("", ":memory:") else None
