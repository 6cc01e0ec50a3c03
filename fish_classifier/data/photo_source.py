"""Optional photo sets the pipeline reads besides the dataset (unknown photos, field photos, backgrounds):
a zip or a folder, unpacked or copied into the stage's output and listed, each photo read with the same
readers as the fish (`images.open_rgb`), a photo that cannot be read skipped with its reason."""

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from fish_classifier.data.scratch import remove_stale_scratch, scratch_folder
from fish_classifier.data.unzip import DownloadError, UnpackLimits, extract_zip
from fish_classifier.images import ImageError, is_image_file, open_rgb


@dataclass
class PhotoFolder:
    photos: list[Path]  # readable photos, sorted, under the folder they were gathered into
    skipped: list[dict] = field(default_factory=list)  # path (from the folder above `into`), reason


def gather_photos(source: str, into: str | Path, limits: UnpackLimits, key: str, empty_means: str) -> PhotoFolder:
    """Copy (a folder) or unpack (a zip) `source` into the new folder `into` and list its readable photos.

    An empty `source` gives no photos. `key` (the params.yaml key that named it) and `empty_means` (what ""
    does, `to skip the field figures`) make the error raised when `source` is neither a zip nor a folder.
    """
    into = Path(into)
    shutil.rmtree(into, ignore_errors=True)
    remove_stale_scratch(into.parent)  # a killed run's unpacking, of this stage or another
    into.parent.mkdir(parents=True, exist_ok=True)
    if not source:
        into.mkdir()
        return PhotoFolder([])
    path = Path(source)
    if path.is_dir():
        shutil.copytree(path, into)
    elif path.is_file():
        with scratch_folder(into.parent, ".photos-tmp-") as scratch:
            extract_zip(path, Path(scratch) / "unpacked", limits)
            Path(scratch, "unpacked").rename(into)
    else:
        raise DownloadError(f"{key} {source!r} is neither a zip nor a folder; set it to one, or to \"\" {empty_means}")
    photos, skipped = [], []
    for file in sorted(p for p in into.rglob("*") if p.is_file()):
        relative = file.relative_to(into.parent).as_posix()
        if not is_image_file(file):
            skipped.append({"path": relative, "reason": "not an image file by its name"})
            continue
        try:
            open_rgb(file)
        except (ImageError, OSError) as exc:
            skipped.append({"path": relative, "reason": str(exc)})
            continue
        photos.append(file)
    return PhotoFolder(photos, skipped)


def skipped_lines(skipped: list[dict], shown: int = 10) -> list[str]:
    """What a stage prints about the files it skipped: the first `shown`, each with its reason, then how many more."""
    lines = [f"  skipped {entry['path']}: {entry['reason']}" for entry in skipped[:shown]]
    if len(skipped) > shown:
        lines.append(f"  ... and {len(skipped) - shown} more (the stage's manifest lists what was kept)")
    return lines
