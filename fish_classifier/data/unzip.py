"""Unpacking a zip of photos (the dataset, or an optional photo set) within the limits params.yaml sets, and
finding the dataset's train/val/test root inside it.

Before anything is unpacked, the zip's directory is checked: encrypted members and compression methods Python
lacks are refused by name, and so is a zip over `data.max_unpacked_mb`, or compressed beyond
`data.max_compression_ratio` as a whole or in a member (a zip bomb).
"""

import zipfile
from collections.abc import Callable, Collection
from pathlib import Path

from pydantic import ConfigDict
from tqdm import tqdm

from fish_classifier.layout import SPLITS
from fish_classifier.params import Section, check_params, number

# Folders that zip tools add and that never hold the dataset.
_IGNORED_NAMES = ("__MACOSX",)
# Members smaller than this cannot expand into much, however well they compress (a blank BMP does 1000:1).
_RATIO_CHECKED_FROM_BYTES = 1 << 20
_UNPACKABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
_ENCRYPTED_FLAG = 0x1


class DownloadError(Exception):
    """The dataset (or a photo set) could not be fetched or unpacked; the one-line message says how to fix it."""


class UnpackLimits(Section):
    """How much a dataset zip may unpack to: params.yaml's `data.max_unpacked_mb` and `data.max_compression_ratio`."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # the rest of `data` is other settings' business

    max_unpacked_mb: number(gt=0)
    max_compression_ratio: number(gt=0)

    @classmethod
    def from_params(cls, data_params: dict) -> "UnpackLimits":
        return check_params(cls, data_params, "data")

    def check(self, members: list[zipfile.ZipInfo], zip_name: str) -> None:
        """Refuse a zip whose central directory declares more than the limits allow, before unpacking any of it:
        over `max_unpacked_mb` in all, or compressed beyond `max_compression_ratio` in a member or as a whole
        (2,000 members of 1 MB of zeros each pass one by one, but not together).

        zipfile never reads a member past the size declared there (it checks the CRC at that point instead),
        so these declared sizes also bound what the unpacking writes.
        """
        total_mb = sum(member.file_size for member in members) / 2**20
        if total_mb > self.max_unpacked_mb:
            raise DownloadError(
                f"{zip_name} would unpack to {total_mb:,.1f} MB, over data.max_unpacked_mb "
                f"({self.max_unpacked_mb:,g} MB); raise it in params.yaml if this really is the dataset"
            )
        for member in members:
            ratio = member.file_size / max(member.compress_size, 1)
            if member.file_size >= _RATIO_CHECKED_FROM_BYTES and ratio > self.max_compression_ratio:
                raise DownloadError(
                    f"{member.filename!r} in {zip_name} is compressed {ratio:,.0f} to 1, over "
                    f"data.max_compression_ratio ({self.max_compression_ratio:,g}): photos barely compress, "
                    "so this looks like a zip bomb; raise the limit in params.yaml if this really is the dataset"
                )
        unpacked = sum(member.file_size for member in members)
        packed = sum(member.compress_size for member in members)
        ratio = unpacked / max(packed, 1)
        if unpacked >= _RATIO_CHECKED_FROM_BYTES and ratio > self.max_compression_ratio:
            raise DownloadError(
                f"{zip_name} would unpack {len(members):,} members from {packed / 2**20:,.1f} MB to "
                f"{unpacked / 2**20:,.1f} MB, compressed {ratio:,.0f} to 1 as a whole, over "
                f"data.max_compression_ratio ({self.max_compression_ratio:,g}): photos barely compress, "
                "so this looks like a zip bomb; raise the limit in params.yaml if this really is the dataset"
            )


def extract_zip(zip_path: Path, into: Path, limits: UnpackLimits,
                choose: Callable[[list[str]], Collection[str]] | None = None) -> None:
    """Unpack every member of `zip_path` into `into`, once its directory has passed `limits`; with `choose`, only
    the files whose names (as the zip lists them) it returns from the list of all of them."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = archive.infolist()
            limits.check(members, zip_path.name)  # the whole zip: what is left out still came in it
            if choose is not None:
                chosen = set(choose([member.filename for member in members if not member.is_dir()]))
                members = [member for member in members if member.filename in chosen]
            for member in members:
                _check_unpackable(member, zip_path.name)
            # ZipFile.extract strips absolute paths and '..', so no member escapes `into`.
            for member in tqdm(members, desc="unzip", unit="file"):
                _extract_member(archive, member, into, zip_path.name)
    except zipfile.BadZipFile as exc:
        raise DownloadError(
            f"{zip_path.name} is not a valid zip file ({exc}); point data.source at the dataset zip"
        ) from exc
    except OSError as exc:
        raise DownloadError(f"cannot unpack {zip_path.name}: {exc}") from exc


def _check_unpackable(member: zipfile.ZipInfo, zip_name: str) -> None:
    if member.flag_bits & _ENCRYPTED_FLAG:
        raise DownloadError(
            f"{member.filename!r} in {zip_name} is encrypted; unzip it with its password and zip the dataset again "
            "without one"
        )
    if member.compress_type not in _UNPACKABLE_METHODS:
        method = zipfile.compressor_names.get(member.compress_type, f"method {member.compress_type}")
        allowed = ", ".join(zipfile.compressor_names[m] for m in _UNPACKABLE_METHODS)
        raise DownloadError(
            f"{member.filename!r} in {zip_name} is compressed with {method}, which Python cannot unpack "
            f"(it can: {allowed}); zip the dataset again with plain deflate"
        )


def _extract_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, into: Path, zip_name: str) -> None:
    try:
        archive.extract(member, into)
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # the disk, not the zip: extract_zip reports it for the whole zip
        # Corrupt data surfaces as zlib.error, BadZipFile, EOFError, LZMAError, or (bz2) an OSError without errno.
        raise DownloadError(
            f"cannot unpack {member.filename!r} from {zip_name}: its data is corrupt ({exc or type(exc).__name__}); "
            "download the zip again"
        ) from exc


def find_dataset_root(directory: Path, *, zip_name: str = "the zip") -> Path:
    """The shallowest folder under `directory` (itself included) that holds train/, val/ and test/."""
    folders = [directory, *(p for p in directory.rglob("*") if p.is_dir())]
    roots = [f for f in folders if not _is_ignored(f.relative_to(directory)) and all((f / s).is_dir() for s in SPLITS)]
    if not roots:
        found = ", ".join(_top_folders(directory)) or "nothing"
        raise DownloadError(
            f"{zip_name} has no folder holding {', '.join(s + '/' for s in SPLITS)} at any depth; "
            f"its top folders are: {found}. Point data.source at the fish dataset zip"
        )
    return min(roots, key=lambda f: (len(f.parts), f.as_posix()))


def _top_folders(directory: Path) -> list[str]:
    """What the zip holds at its first level with more than one entry (single wrapper folders are walked through)."""
    level = directory
    while True:
        entries = sorted(e for e in level.iterdir() if not _is_ignored(e.relative_to(directory)))
        if len(entries) == 1 and entries[0].is_dir():
            level = entries[0]
            continue
        return [e.relative_to(directory).as_posix() + ("/" if e.is_dir() else "") for e in entries]


def _is_ignored(relative: Path) -> bool:
    return any(part in _IGNORED_NAMES for part in relative.parts)
