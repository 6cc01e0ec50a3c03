"""Fetching the dataset zip named by `data.source` and unpacking its train/val/test root into `data/raw`.

A source is one of:
  gdrive://<folder id>   a public Google Drive folder; its `data.drive_file` is fetched with gdown
                         (the folder's browser address, https://drive.google.com/drive/folders/<id>, too)
  https://host/file.zip  any http(s) URL to the zip
  path/to/file.zip       a zip on disk, relative to the repository root

`data/raw` is all or nothing: the zip is unpacked into a scratch folder next to it
and renamed into place only once the dataset root has been found, so a failed or
interrupted run never leaves a `data/raw` that `prepare` would trust. A scratch folder left
by a killed run is removed by the next data stage that starts (`scratch_folder`). Before anything is
unpacked, the zip's directory is checked: encrypted members and compression methods Python
lacks are refused by name, and so is a zip over `data.max_unpacked_mb`, or compressed beyond
`data.max_compression_ratio` as a whole or in a member (a zip bomb).
"""

import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import gdown
import requests
from pydantic import ConfigDict
from tqdm import tqdm

from fish_classifier.cpus import process_running
from fish_classifier.hashing import file_sha256
from fish_classifier.params import Section, check_params, number, text
from fish_classifier.splits import SPLITS

DRIVE_SCHEME = "gdrive://"
DRIVE_FOLDER_URL = "https://drive.google.com/drive/folders/{}"
SOURCE_FORMS = "gdrive://<folder id>, https://host/file.zip or path/to/file.zip"

# Offline, connecting is what hangs: give up on it in seconds, but let a slow
# server stream the zip for as long as it keeps sending bytes.
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 120
TIMEOUT = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)

TEMP_PREFIX = ".raw-tmp-"  # data/raw's scratch folders: .raw-tmp-<pid>-<random>
# A scratch folder of any data stage: .<what>-tmp-<pid of the process that made it>-<random>.
_SCRATCH = re.compile(r"^\.[\w.-]+?-tmp-(?:(\d+)-)?")
# What earlier versions left in data/ (tempfile's own names, by gather_photos and the composite stage).
_OLD_SCRATCH = re.compile(r"^(?:tmp|backgrounds-)[a-z0-9_]{8}$")
_DRIVE_FOLDER_URL = re.compile(r"^https?://drive\.google\.com/drive/(?:u/\d+/)?folders/([\w-]+)")
_DRIVE_ID = re.compile(r"^[\w-]{25,}$")
# Folders that zip tools add and that never hold the dataset.
_IGNORED_NAMES = ("__MACOSX",)
_CHUNK = 1 << 20
# Members smaller than this cannot expand into much, however well they compress (a blank BMP does 1000:1).
_RATIO_CHECKED_FROM_BYTES = 1 << 20
_UNPACKABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
_ENCRYPTED_FLAG = 0x1


class DownloadError(Exception):
    """The dataset could not be fetched or unpacked; the one-line message says how to fix it."""


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


class DownloadSettings(UnpackLimits):
    """What the download stage reads from params.yaml's `data`: where the zip comes from, and (as the
    UnpackLimits it is) how much it may unpack to."""

    source: text(empty=False, meaning=f": {SOURCE_FORMS}")
    drive_file: text(empty=False, meaning=": the file to take from the Drive folder")


def download_dataset(source: str, *, drive_file: str, raw_dir: str | Path, limits: UnpackLimits) -> dict:
    """Fetch the zip named by `source`, unpack its dataset root into `raw_dir`, and return the record
    for `data/download.json`: source, the zip's sha256 and size, where the root sat inside the zip,
    and the number of files per split."""
    raw_dir = Path(raw_dir)
    remove_stale(raw_dir)
    with scratch_folder(raw_dir.parent, TEMP_PREFIX) as workdir:
        workdir = Path(workdir)
        zip_path = fetch_zip(source, drive_file=drive_file, into=workdir)
        record = {"source": source, "sha256": file_sha256(zip_path), "size_bytes": zip_path.stat().st_size}
        unpacked = workdir / "unpacked"
        extract_zip(zip_path, unpacked, limits)
        root = find_dataset_root(unpacked, zip_name=Path(zip_path).name)
        record["dataset_root"] = root.relative_to(unpacked).as_posix()
        record["files"] = {split: sum(1 for p in (root / split).rglob("*") if p.is_file()) for split in SPLITS}
        # The one step that makes data/raw visible: a rename within one folder is atomic.
        root.rename(raw_dir)
    return record


def remove_stale(raw_dir: Path) -> None:
    """Delete an earlier `raw_dir` and the scratch folders of interrupted runs next to it."""
    if raw_dir.exists():
        shutil.rmtree(raw_dir)
    remove_stale_scratch(raw_dir.parent)


def scratch_folder(parent: str | Path, prefix: str) -> tempfile.TemporaryDirectory:
    """A new folder `<prefix><pid>-<random>` in `parent` (made if need be) for a data stage to unpack into,
    removed when the `with` block ends. `prefix` is `.<what>-tmp-` (TEMP_PREFIX for data/raw).

    A run killed with -9 never ends its block, and DVC may restore the next run's outputs from its cache
    without running it: so every data stage that makes one first removes the stale ones, of any stage.
    """
    if not _SCRATCH.match(prefix):
        raise ValueError(f"a scratch folder's prefix is .<what>-tmp-, got {prefix!r}")
    remove_stale_scratch(parent)
    Path(parent).mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-", dir=parent)


def remove_stale_scratch(parent: str | Path) -> list[Path]:
    """Delete the scratch folders in `parent` whose process is gone (a killed run's), and return them.

    A folder of a process still running (another stage, unpacking now) is left alone.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return []
    stale = []
    for folder in parent.iterdir():
        scratch = _SCRATCH.match(folder.name)
        if folder.is_dir() and ((scratch and not _running(scratch.group(1))) or _OLD_SCRATCH.match(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)
            stale.append(folder)
    return stale


def _running(pid: str | None) -> bool:
    """Whether the process `pid` (from a scratch folder's name; None in an older name) is still running."""
    return pid is not None and process_running(int(pid))


def fetch_zip(source: str, *, drive_file: str, into: Path) -> Path:
    """The zip named by `source` on local disk: downloaded into `into`, or the local file itself."""
    if source.startswith(DRIVE_SCHEME):
        return fetch_from_drive(source[len(DRIVE_SCHEME):].strip("/"), drive_file=drive_file, into=into)
    drive_folder = _DRIVE_FOLDER_URL.match(source)
    if drive_folder:  # the address a browser shows for the folder: the same as gdrive://<its id>
        return fetch_from_drive(drive_folder.group(1), drive_file=drive_file, into=into)
    if source.startswith(("https://", "http://")):
        return fetch_url(source, into=into)
    if "://" in source:
        raise DownloadError(f"unsupported data.source {source!r}; expected one of: {SOURCE_FORMS}")
    path = Path(source)
    where = f" (resolved to {path.resolve()})" if not path.is_absolute() else ""
    if path.is_dir():
        # A folder has no one sha256 to record the dataset by, and the zip is what the Drive folder holds.
        splits = [split for split in SPLITS if (path / split).is_dir()]
        holds = f"it holds {', '.join(s + '/' for s in splits)}: zip it, and " if splits else ""
        raise DownloadError(
            f"data.source {source!r} is a folder{where}, not a zip; {holds}point data.source in params.yaml at the "
            f"dataset zip, an https URL to it, or a Google Drive folder as gdrive://<folder id>"
        )
    if not path.is_file():
        hint = (f"; if {source!r} is a Google Drive folder id, write gdrive://{source}"
                if _DRIVE_ID.match(source) else "")
        raise DownloadError(
            f"data.source {source!r} does not exist{where}; point data.source in params.yaml at the dataset zip "
            f"(relative paths start at the repository root){hint}"
        )
    return path


def fetch_from_drive(folder_id: str, *, drive_file: str, into: Path) -> Path:
    """Download `drive_file` from the public Drive folder `folder_id` with gdown."""
    if not folder_id:
        raise DownloadError(f"data.source 'gdrive://' has no folder id; expected one of: {SOURCE_FORMS}")
    folder_url = DRIVE_FOLDER_URL.format(folder_id)
    by_hand = (
        f"Download {drive_file} by hand from {folder_url}, then set data.source to its path "
        f"in params.yaml (or run `dvc exp run -S data.source=path/to/{drive_file}`)"
    )
    try:
        listing = gdown.download_folder(id=folder_id, skip_download=True, quiet=True, timeout=TIMEOUT)
        matches = [entry for entry in listing if Path(entry.path).name == drive_file]
        if not matches:
            names = ", ".join(sorted(Path(entry.path).name for entry in listing)) or "nothing"
            raise DownloadError(
                f"the Drive folder {folder_url} has no {drive_file!r} (it holds: {names}); "
                "set data.drive_file in params.yaml to one of those"
            )
        target = into / drive_file
        print(f"Downloading {drive_file} from {folder_url}")
        gdown.download(id=matches[0].id, output=str(target), quiet=False, timeout=TIMEOUT)
    except (requests.RequestException, gdown.exceptions.DownloadError) as exc:
        raise DownloadError(f"cannot download {drive_file} from Google Drive ({_why(exc)}). {by_hand}") from exc
    if not zipfile.is_zipfile(target):
        raise DownloadError(f"Google Drive sent a page instead of {drive_file} (download refused). {by_hand}")
    return target


def fetch_url(url: str, *, into: Path) -> Path:
    """Stream `url` into `into`, with a progress bar."""
    name = Path(urlparse(url).path).name or "dataset.zip"
    target = into / name
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT) as response:
            response.raise_for_status()
            total = int(response.headers.get("Content-Length", 0)) or None
            with open(target, "wb") as f, tqdm(total=total, unit="B", unit_scale=True, desc=name) as bar:
                for chunk in response.iter_content(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as exc:
        raise DownloadError(
            f"cannot download {url} ({_why(exc)}). Download the zip by hand, then set data.source to its path "
            "in params.yaml (or run `dvc exp run -S data.source=path/to/Dataset.zip`)"
        ) from exc
    return target


def extract_zip(zip_path: Path, into: Path, limits: UnpackLimits) -> None:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = archive.infolist()
            for member in members:
                _check_unpackable(member, zip_path.name)
            limits.check(members, zip_path.name)
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


def _why(exc: Exception) -> str:
    """A short reason for a network failure, without the wall of text requests puts in its messages."""
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return "no network connection to the server"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"the server answered HTTP {exc.response.status_code}"
    if isinstance(exc, gdown.exceptions.FileURLRetrievalError):
        return "Drive refused the download, usually because the file is over its download quota"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return first_line[:200]
