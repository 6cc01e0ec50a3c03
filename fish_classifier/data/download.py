"""Fetching the dataset zip named by `data.source` and unpacking its train/val/test root into `data/raw`.

A source is one of:
  gdrive://<folder id>   a public Google Drive folder; its `data.drive_file` is fetched with gdown
                         (the folder's browser address, https://drive.google.com/drive/folders/<id>, too)
  https://host/file.zip  any http(s) URL to the zip
  path/to/file.zip       a zip on disk, relative to the repository root

`data/raw` is all or nothing: the zip is unpacked into a scratch folder next to it
and renamed into place only once the dataset root has been found, so a failed or
interrupted run never leaves a `data/raw` that `prepare` would trust. A scratch folder left
by a killed run is removed by the next data stage that starts (`scratch.scratch_folder`). The unpacking and
its limits are `unzip`'s.
"""

import hashlib
import re
import shutil
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import gdown
import requests
from tqdm import tqdm

from fish_classifier.data.scratch import remove_stale_scratch, scratch_folder
from fish_classifier.data.unzip import DownloadError, UnpackLimits, extract_zip, find_dataset_root
from fish_classifier.layout import SPLITS
from fish_classifier.params import text

DRIVE_SCHEME = "gdrive://"
DRIVE_FOLDER_URL = "https://drive.google.com/drive/folders/{}"
SOURCE_FORMS = "gdrive://<folder id>, https://host/file.zip or path/to/file.zip"

# Offline, connecting is what hangs: give up on it in seconds, but let a slow
# server stream the zip for as long as it keeps sending bytes.
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 120
TIMEOUT = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)

TEMP_PREFIX = ".raw-tmp-"  # data/raw's scratch folders: .raw-tmp-<pid>-<random>
_DRIVE_FOLDER_URL = re.compile(r"^https?://drive\.google\.com/drive/(?:u/\d+/)?folders/([\w-]+)")
_DRIVE_ID = re.compile(r"^[\w-]{25,}$")
_CHUNK = 1 << 20


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
        with open(zip_path, "rb") as f:
            sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        record = {"source": source, "sha256": sha256, "size_bytes": zip_path.stat().st_size}
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


def fetch_url(url: str, *, into: Path, key: str = "data.source") -> Path:
    """Stream `url` into `into`, with a progress bar. `key`: the params.yaml key that named it, which the error
    for a failed download tells the user to point at a copy downloaded by hand."""
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
            f"cannot download {url} ({_why(exc)}). Download the zip by hand, then set {key} to its path "
            f"in params.yaml (or run `dvc exp run -S {key}=path/to/{name}`)"
        ) from exc
    return target


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
