"""Optional photo sets the pipeline reads besides the dataset (unknown photos, field photos, backgrounds, the
outlier pool): a zip, a folder or an http(s) URL to a zip, unpacked or copied into the stage's output and listed,
each photo read with the same readers as the fish (`images.open_rgb`), a photo that cannot be read skipped with its
reason."""

import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

from fish_classifier.data.download import fetch_url
from fish_classifier.data.scratch import remove_stale_scratch, scratch_folder
from fish_classifier.data.unzip import DownloadError, UnpackLimits, extract_zip
from fish_classifier.images import ImageError, is_image_file, open_rgb


@dataclass
class PhotoFolder:
    photos: list[Path]  # readable photos, sorted, under the folder they were gathered into
    skipped: list[dict] = field(default_factory=list)  # path (from the folder above `into`), reason


# Picks, from the names of all the files of a source (relative to its top, "/"-separated), those to take.
Choose = Callable[[list[str]], Collection[str]]
URL_SCHEMES = ("https://", "http://")


def gather_photos(source: str, into: str | Path, limits: UnpackLimits, key: str, empty_means: str,
                  choose: Choose | None = None) -> PhotoFolder:
    """Copy (a folder), unpack (a zip) or download and unpack (an http(s) URL to a zip) `source` into the new
    folder `into` and list its readable photos. `choose`: only the files it picks are copied or unpacked.

    An empty `source` gives no photos. `key` (the params.yaml key that named it) and `empty_means` (what ""
    does, `to skip the field figures`) make the error raised when `source` is neither a zip, a folder nor a URL,
    and the one raised when a URL cannot be downloaded names `key`.
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
        _copy_folder(path, into, choose)
    elif source.startswith(URL_SCHEMES) or path.is_file():
        with scratch_folder(into.parent, ".photos-tmp-") as scratch:
            unpacked = Path(scratch, "unpacked")
            unpacked.mkdir()
            zip_path = fetch_url(source, into=Path(scratch), key=key) if source.startswith(URL_SCHEMES) else path
            extract_zip(zip_path, unpacked, limits, choose)
            unpacked.rename(into)
    else:
        raise DownloadError(f"{key} {source!r} is neither a zip, a folder nor an https URL to a zip; set it to one, "
                            f"or to \"\" {empty_means}")
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


def _copy_folder(source: Path, into: Path, choose: Choose | None) -> None:
    if choose is None:
        shutil.copytree(source, into)
        return
    into.mkdir()
    for name in choose(sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file())):
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, into / name)


def skipped_lines(skipped: list[dict], shown: int = 10) -> list[str]:
    """What a stage prints about the files it skipped: the first `shown`, each with its reason, then how many more."""
    lines = [f"  skipped {entry['path']}: {entry['reason']}" for entry in skipped[:shown]]
    if len(skipped) > shown:
        lines.append(f"  ... and {len(skipped) - shown} more (the stage's manifest lists what was kept)")
    return lines
