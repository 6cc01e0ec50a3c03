import hashlib
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gdown
import pytest
import requests
import yaml
from support import REPO_ROOT
from support.synthetic_images import ZIP_PREFIX, image_bytes

from fish_classifier.data import download
from fish_classifier.data.download import download_dataset, fetch_zip
from fish_classifier.data.unzip import DownloadError, UnpackLimits
from fish_classifier.params import load_params

DATA_PARAMS = load_params(REPO_ROOT / "params.yaml")["data"]
LIMITS = UnpackLimits.from_params(DATA_PARAMS)
DRIVE_ID = "1iKdOs4slf3XvNWkeSfsszhPRggfJ2qEd"


def _drive_entry(id, path, local_path):
    """An entry of gdown.download_folder(skip_download=True)'s listing."""
    return SimpleNamespace(id=id, path=path, local_path=local_path)


@pytest.fixture
def raw_dir(tmp_path):
    return tmp_path / "data" / "raw"


def _leftovers(raw_dir):
    return sorted(p.name for p in raw_dir.parent.glob(download.TEMP_PREFIX + "*"))


def test_local_zip_is_unpacked_from_its_nested_root(make_dataset_zip, raw_dir):
    zip_path = make_dataset_zip()
    record = download_dataset(str(zip_path), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)

    assert record["sha256"] == hashlib.sha256(zip_path.read_bytes()).hexdigest()
    assert record["size_bytes"] == zip_path.stat().st_size
    assert record["dataset_root"] == ZIP_PREFIX
    assert record["files"] == {"train": 9, "val": 3, "test": 3}  # 3 classes x COUNTS
    assert sorted(p.name for p in raw_dir.iterdir()) == ["test", "train", "val"]
    assert (raw_dir / "train" / "animal fish bass" / "000.jpg").is_file()
    assert _leftovers(raw_dir) == []


def test_splits_at_the_top_of_the_zip_are_found(make_dataset_zip, raw_dir):
    zip_path = make_dataset_zip(prefix="")
    record = download_dataset(str(zip_path), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    assert record["dataset_root"] == "."
    assert (raw_dir / "val" / "animal fish").is_dir()


def test_missing_source_path_is_named(tmp_path, raw_dir):
    with pytest.raises(DownloadError, match=r"data.source 'nowhere/Dataset.zip' does not exist \(resolved to /"):
        download_dataset("nowhere/Dataset.zip", drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)


def test_a_folder_source_is_named_as_a_folder_not_as_missing(tmp_path, make_image_tree, raw_dir, monkeypatch):
    # A folder has no one sha256 for data/download.json to pin the dataset by: the zip is asked for, by name.
    dataset = make_image_tree(tmp_path / "x")
    with pytest.raises(DownloadError) as caught:
        download_dataset(str(dataset), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    assert str(caught.value) == (
        f"data.source {str(dataset)!r} is a folder, not a zip; it holds train/, val/, test/: zip it, and point "
        "data.source in params.yaml at the dataset zip, an https URL to it, or a Google Drive folder as "
        "gdrive://<folder id>"
    )
    (tmp_path / "photos").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DownloadError) as caught:
        fetch_zip("photos", drive_file="Dataset.zip", into=tmp_path)
    assert str(caught.value).startswith(f"data.source 'photos' is a folder (resolved to {tmp_path / 'photos'}), "
                                        "not a zip; point data.source")
    assert not raw_dir.exists() and _leftovers(raw_dir) == []


def test_a_bare_drive_folder_id_is_pointed_at_the_gdrive_form(tmp_path):
    with pytest.raises(DownloadError) as caught:
        fetch_zip(DRIVE_ID, drive_file="Dataset.zip", into=tmp_path)
    assert str(caught.value).endswith(f"; if {DRIVE_ID!r} is a Google Drive folder id, write gdrive://{DRIVE_ID}")


def test_a_file_that_is_not_a_zip_is_named(tmp_path, raw_dir):
    fake = tmp_path / "Dataset.zip"
    fake.write_text("<html>quota exceeded</html>")
    with pytest.raises(DownloadError, match="Dataset.zip is not a valid zip file"):
        download_dataset(str(fake), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)


def test_unknown_source_scheme_lists_the_accepted_forms(tmp_path):
    with pytest.raises(DownloadError, match=r"unsupported data.source 's3://bucket/x.zip'; expected one of: gdrive://"):
        fetch_zip("s3://bucket/x.zip", drive_file="Dataset.zip", into=tmp_path)


def test_failed_extraction_leaves_no_raw_folder(make_dataset_zip, raw_dir, monkeypatch):
    # A stale data/raw and the temp folder of a killed run, both from earlier runs.
    (raw_dir / "train" / "old class").mkdir(parents=True)
    (raw_dir.parent / (download.TEMP_PREFIX + "killed")).mkdir()
    extracted = []

    def extract_then_fail(self, member, path=None, pwd=None):
        if len(extracted) == 3:
            raise OSError(28, "No space left on device")
        extracted.append(member)
        return original_extract(self, member, path, pwd)

    original_extract = zipfile.ZipFile.extract
    monkeypatch.setattr(zipfile.ZipFile, "extract", extract_then_fail)
    with pytest.raises(DownloadError, match="cannot unpack Dataset.zip: .*No space left on device"):
        download_dataset(str(make_dataset_zip()), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    assert len(extracted) == 3
    assert not raw_dir.exists()
    assert _leftovers(raw_dir) == []


def test_a_new_run_replaces_the_old_raw_folder(make_dataset_zip, tmp_path, raw_dir):
    first = make_dataset_zip(classes=["animal fish"])
    download_dataset(str(first), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    other = make_dataset_zip(tmp_path / "other.zip", classes=["fish sea_food trout"])
    download_dataset(str(other), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    assert sorted(p.name for p in (raw_dir / "train").iterdir()) == ["fish sea_food trout"]


def test_a_new_run_removes_the_temporary_folder_of_a_killed_one(make_dataset_zip, raw_dir):
    killed = raw_dir.parent / (download.TEMP_PREFIX + "abc123")
    (killed / "unpacked").mkdir(parents=True)
    (killed / "unpacked" / "half.jpg").write_bytes(b"\xff\xd8")
    download_dataset(str(make_dataset_zip()), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    assert _leftovers(raw_dir) == [] and (raw_dir / "train").is_dir()


def _zip_without_splits(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Dataset/data/training/a/1.jpg", image_bytes())
    return path


def _zip_over_the_size_limit(path: Path) -> Path:  # 3 MB of zeros: over 2 MB, and a bomb by its ratio
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Dataset/train/a/0.jpg", bytes(3 * 2**20))
    return path


def _zip_of_many_small_bombs(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(200):
            archive.writestr(f"Dataset/train/a/{i:04d}.bmp", bytes(100_000))
    return path


@pytest.mark.parametrize(("make_zip", "max_unpacked_mb", "message"), [
    (_zip_without_splits, 2, "Dataset.zip has no folder holding train/, val/, test/ at any depth"),
    (_zip_over_the_size_limit, 2, "Dataset.zip would unpack to 3.0 MB, over data.max_unpacked_mb (2 MB)"),
    (_zip_of_many_small_bombs, 100, "Dataset.zip would unpack 200 members from "),
])
def test_a_refused_zip_leaves_no_raw_folder_and_no_scratch(tmp_path, raw_dir, make_zip, max_unpacked_mb, message):
    (raw_dir / "train" / "old class").mkdir(parents=True)  # an earlier run's: gone too, never half-replaced
    zip_path = make_zip(tmp_path / "Dataset.zip")
    with pytest.raises(DownloadError) as caught:
        download_dataset(str(zip_path), drive_file="Dataset.zip", raw_dir=raw_dir,
                         limits=UnpackLimits(max_unpacked_mb=max_unpacked_mb, max_compression_ratio=100))
    assert str(caught.value).startswith(message)
    assert not raw_dir.exists() and _leftovers(raw_dir) == []


# --- Google Drive -----------------------------------------------------------------------------


def test_drive_folder_is_listed_then_its_zip_downloaded(make_dataset_zip, raw_dir, monkeypatch):
    zip_path = make_dataset_zip()
    calls = {}

    def list_folder(**kwargs):
        calls["folder"] = kwargs
        return [
            _drive_entry(id="readme-id", path="README.txt", local_path="x/README.txt"),
            _drive_entry(id="zip-file-id", path="Dataset.zip", local_path="x/Dataset.zip"),
        ]

    def fetch_file(**kwargs):
        calls["file"] = kwargs
        Path(kwargs["output"]).write_bytes(zip_path.read_bytes())
        return kwargs["output"]

    monkeypatch.setattr(gdown, "download_folder", list_folder)
    monkeypatch.setattr(gdown, "download", fetch_file)
    record = download_dataset(f"gdrive://{DRIVE_ID}", drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)

    assert calls["folder"]["id"] == DRIVE_ID and calls["folder"]["skip_download"] is True
    assert calls["file"]["id"] == "zip-file-id"
    assert calls["folder"]["timeout"][0] <= 10 and calls["file"]["timeout"][0] <= 10
    assert record["source"] == f"gdrive://{DRIVE_ID}"
    assert record["sha256"] == hashlib.sha256(zip_path.read_bytes()).hexdigest()
    assert (raw_dir / "test").is_dir() and _leftovers(raw_dir) == []


@pytest.fixture
def no_network(monkeypatch):
    """Every HTTP request fails to connect, as on a machine with no network; records the timeouts asked for."""
    timeouts = []

    def refuse(self, request, timeout=None, **kwargs):
        timeouts.append(timeout)
        raise requests.ConnectionError(f"Failed to establish a new connection to {request.url}: Network is unreachable")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", refuse)
    return timeouts


def test_a_drive_folder_address_from_the_browser_is_taken_as_gdrive(make_dataset_zip, raw_dir, monkeypatch):
    zip_path = make_dataset_zip()
    listed = []

    def list_folder(**kwargs):
        listed.append(kwargs["id"])
        return [_drive_entry(id="zip-file-id", path="Dataset.zip", local_path="")]

    monkeypatch.setattr(gdown, "download_folder", list_folder)
    monkeypatch.setattr(gdown, "download", lambda **kw: Path(kw["output"]).write_bytes(zip_path.read_bytes()))
    url = f"https://drive.google.com/drive/folders/{DRIVE_ID}?usp=sharing"
    record = download_dataset(url, drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    assert listed == [DRIVE_ID] and record["source"] == url and (raw_dir / "train").is_dir()


def test_drive_without_network_fails_fast_with_the_manual_fix(raw_dir, no_network):
    start = time.perf_counter()
    with pytest.raises(DownloadError) as caught:
        download_dataset(f"gdrive://{DRIVE_ID}", drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    assert time.perf_counter() - start < 5
    message = str(caught.value)
    assert message.startswith("cannot download Dataset.zip from Google Drive (no network connection to the server)")
    assert f"by hand from https://drive.google.com/drive/folders/{DRIVE_ID}" in message
    assert "set data.source to its path in params.yaml" in message
    assert "dvc exp run -S data.source=path/to/Dataset.zip" in message
    assert "\n" not in message
    # The real gdown asked with a short connect timeout, so a silent network also fails in seconds.
    assert no_network and no_network[0][0] <= 10
    assert not raw_dir.exists() and _leftovers(raw_dir) == []


def test_drive_over_quota_says_how_to_download_by_hand(raw_dir, monkeypatch):
    monkeypatch.setattr(
        gdown, "download_folder", lambda **kw: [_drive_entry(id="f", path="Dataset.zip", local_path="")]
    )

    def over_quota(**kwargs):
        raise gdown.exceptions.FileURLRetrievalError("Too many users have viewed or downloaded this file recently.")

    monkeypatch.setattr(gdown, "download", over_quota)
    with pytest.raises(DownloadError, match=r"over its download quota\)\. Download Dataset.zip by hand from https://"):
        download_dataset(f"gdrive://{DRIVE_ID}", drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)


def test_drive_sending_a_web_page_is_a_refusal(raw_dir, monkeypatch):
    monkeypatch.setattr(
        gdown, "download_folder", lambda **kw: [_drive_entry(id="f", path="Dataset.zip", local_path="")]
    )
    monkeypatch.setattr(gdown, "download", lambda **kw: Path(kw["output"]).write_text("<html>Sign in</html>"))
    with pytest.raises(DownloadError, match=r"Google Drive sent a page instead of Dataset.zip .* by hand from"):
        download_dataset(f"gdrive://{DRIVE_ID}", drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)


def test_drive_folder_without_the_file_lists_what_it_holds(raw_dir, monkeypatch):
    listing = [_drive_entry(id="a", path=name, local_path="") for name in ("Fish.zip", "README")]
    monkeypatch.setattr(gdown, "download_folder", lambda **kw: listing)
    message = r"has no 'Dataset.zip' \(it holds: Fish.zip, README\); set data.drive_file"
    with pytest.raises(DownloadError, match=message):
        download_dataset(f"gdrive://{DRIVE_ID}", drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)


# --- https ----------------------------------------------------------------------------------


def test_url_source_is_streamed_and_unpacked(make_dataset_zip, local_server, raw_dir):
    base, www = local_server
    zip_path = make_dataset_zip(www / "fish.zip")
    record = download_dataset(f"{base}/fish.zip", drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    assert record["sha256"] == hashlib.sha256(zip_path.read_bytes()).hexdigest()
    assert (raw_dir / "train" / "animal fish").is_dir()


def test_url_that_is_not_found_names_the_status(local_server, raw_dir):
    base, _ = local_server
    message = r"cannot download http://127.0.0.1:\d+/gone.zip \(the server answered HTTP 404\)"
    with pytest.raises(DownloadError, match=message):
        download_dataset(f"{base}/gone.zip", drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    assert not raw_dir.exists()


# --- the stage script -------------------------------------------------------------------------


def _run_stage(workdir: Path, source: str, limits=None, **env) -> subprocess.CompletedProcess:
    data = {**DATA_PARAMS, "source": source, **(limits or {})}
    (workdir / "params.yaml").write_text(yaml.safe_dump({"data": data}))
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "stages" / "download.py")],
        cwd=workdir, env=environment, capture_output=True, text=True, timeout=120,
    )


def test_stage_writes_raw_and_the_record(make_dataset_zip, tmp_path):
    zip_path = make_dataset_zip()
    result = _run_stage(tmp_path, "Dataset.zip")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "raw" / "train").is_dir()
    record = (tmp_path / "data" / "download.json").read_text()
    assert hashlib.sha256(zip_path.read_bytes()).hexdigest() in record


def test_stage_takes_the_unpacking_limits_from_params(make_dataset_zip, tmp_path):
    make_dataset_zip()
    result = _run_stage(tmp_path, "Dataset.zip", limits={"max_unpacked_mb": 0.001})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "download failed: Dataset.zip would unpack to 0.0 MB, over data.max_unpacked_mb (0.001 MB)" in result.stderr


def test_stage_prints_one_line_and_exits_1_for_a_missing_source(tmp_path):
    result = _run_stage(tmp_path, "missing/Dataset.zip")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("download failed")]
    assert error_lines == [line for line in result.stderr.splitlines() if line.strip()]
    assert "data.source 'missing/Dataset.zip' does not exist" in error_lines[0]


def test_stage_with_the_default_drive_source_and_no_network_fails_in_seconds(tmp_path):
    # Route every request through a proxy port that nobody listens on: no traffic leaves 127.0.0.1.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    proxy = f"http://127.0.0.1:{dead_port}"
    start = time.perf_counter()
    result = _run_stage(
        tmp_path, f"gdrive://{DRIVE_ID}",
        HTTPS_PROXY=proxy, https_proxy=proxy, HTTP_PROXY=proxy, http_proxy=proxy, NO_PROXY="", no_proxy="",
    )
    assert time.perf_counter() - start < 30  # interpreter start and imports included
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"by hand from https://drive.google.com/drive/folders/{DRIVE_ID}" in result.stderr
    assert not (tmp_path / "data" / "raw").exists()
