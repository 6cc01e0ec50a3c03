import functools
import hashlib
import http.server
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gdown
import pytest
import requests
import yaml
from support import REPO_ROOT
from support.app_bundles import DEV_ZIP
from support.synthetic_images import ZIP_PREFIX, image_bytes

from fish_classifier.data import download
from fish_classifier.data.download import DownloadError, UnpackLimits, download_dataset, extract_zip, fetch_zip
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


def test_macos_litter_is_not_taken_for_the_dataset(make_dataset_zip, raw_dir):
    zip_path = make_dataset_zip(prefix="Dataset")
    with zipfile.ZipFile(zip_path, "a") as archive:  # macOS's resource forks, shallower than the dataset
        for split in ("train", "val", "test"):
            archive.writestr(f"__MACOSX/{split}/._000.jpg", b"")
    record = download_dataset(str(zip_path), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    assert record["dataset_root"] == "Dataset"


def test_zip_without_splits_lists_its_top_folders(tmp_path, raw_dir):
    zip_path = tmp_path / "photos.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("Dataset/data/training/a/1.jpg", image_bytes())
        archive.writestr("Dataset/data/testing/a/1.jpg", image_bytes())
        archive.writestr("Dataset/data/notes.txt", "hi")
    with pytest.raises(DownloadError) as caught:
        download_dataset(str(zip_path), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    message = str(caught.value)
    assert "photos.zip has no folder holding train/, val/, test/" in message
    assert "its top folders are: Dataset/data/notes.txt, Dataset/data/testing/, Dataset/data/training/" in message
    assert "\n" not in message
    assert not raw_dir.exists() and _leftovers(raw_dir) == []


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


def _gone_pid() -> int:
    """The pid of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_unpacking_removes_every_stale_scratch_folder_but_those_of_running_processes(make_dataset_zip, raw_dir):
    """kill -9 while unpacking left a 1.1 GB data/.raw-tmp-*; DVC may then restore data/raw from its run cache
    without running download. Any data stage that unpacks removes the scratch folders of processes that are gone,
    its own kind or another stage's, and of earlier versions (tempfile's names)."""
    data = raw_dir.parent
    gone = _gone_pid()
    stale = [f"{download.TEMP_PREFIX}{gone}-k1ll3d", ".photos-tmp-1234567-x", ".backgrounds-tmp-old", "tmpab_cd123",
             "backgrounds-0a1b2c3d"]
    for name in stale:
        (data / name / "unpacked").mkdir(parents=True)
        (data / name / "unpacked" / "half.jpg").write_bytes(bytes(1000))
    running = data / f".photos-tmp-{os.getpid()}-now"  # another stage unpacking at this moment
    kept = [running, data / "tmp", data / "notes-tmp-1", data / "raw-tmp-1"]  # not scratch names
    for folder in kept:
        folder.mkdir()
    download_dataset(str(make_dataset_zip()), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    assert sorted(p.name for p in data.iterdir()) == sorted(["raw", *(folder.name for folder in kept)])


def test_a_scratch_folder_is_named_for_its_process_and_removed_after_use(tmp_path):
    with download.scratch_folder(tmp_path / "data", ".photos-tmp-") as scratch:
        assert Path(scratch).name.startswith(f".photos-tmp-{os.getpid()}-")
        assert download.remove_stale_scratch(tmp_path / "data") == []  # its own process is running
    assert not Path(scratch).exists()
    with pytest.raises(ValueError, match=r"a scratch folder's prefix is .<what>-tmp-, got 'scratch'"):
        download.scratch_folder(tmp_path, "scratch")


# --- unpacking limits and damaged zips --------------------------------------------------------

MEMBER = "Dataset/train/a/0.jpg"


def _one_member_zip(path: Path, data: bytes, compression=zipfile.ZIP_STORED, name=MEMBER) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr(name, data)
    return path


def _rewrite_headers(path: Path, **fields) -> None:
    """Set `fields` (flag_bits, compress_type, file_size) in the local and central headers of a one-member zip,
    as a damaged, foreign or malicious zip would have them."""
    offsets = {  # field: (offset in the local header, offset in the central directory header, struct format)
        "flag_bits": (6, 8, "<H"), "compress_type": (8, 10, "<H"), "file_size": (22, 24, "<I"),
    }  # fmt: skip
    data = bytearray(path.read_bytes())
    assert data.count(b"PK\x03\x04") == 1 and data.count(b"PK\x01\x02") == 1
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    for name, value in fields.items():
        local_offset, central_offset, layout = offsets[name]
        struct.pack_into(layout, data, local + local_offset, value)
        struct.pack_into(layout, data, central + central_offset, value)
    path.write_bytes(bytes(data))


@pytest.fixture
def no_extraction(monkeypatch):
    """Fail the test if any member is unpacked: the refusal must come from the central directory alone."""
    monkeypatch.setattr(zipfile.ZipFile, "extract", lambda *args, **kwargs: pytest.fail("a member was unpacked"))


def test_a_zip_that_unpacks_over_the_size_limit_is_refused_before_unpacking(tmp_path, raw_dir, no_extraction):
    zip_path = _one_member_zip(tmp_path / "Dataset.zip", bytes(3 * 2**20), zipfile.ZIP_DEFLATED)
    limits = UnpackLimits(max_unpacked_mb=2, max_compression_ratio=10_000)
    with pytest.raises(DownloadError) as caught:
        download_dataset(str(zip_path), drive_file="Dataset.zip", raw_dir=raw_dir, limits=limits)
    assert str(caught.value) == (
        "Dataset.zip would unpack to 3.0 MB, over data.max_unpacked_mb (2 MB); "
        "raise it in params.yaml if this really is the dataset"
    )
    assert not raw_dir.exists() and _leftovers(raw_dir) == []


def test_a_zip_bomb_is_refused_by_its_compression_ratio_before_unpacking(tmp_path, raw_dir, no_extraction):
    zip_path = _one_member_zip(tmp_path / "Dataset.zip", bytes(3 * 2**20), zipfile.ZIP_DEFLATED)
    with pytest.raises(DownloadError) as caught:
        download_dataset(str(zip_path), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    message = str(caught.value)
    assert message.startswith(f"'{MEMBER}' in Dataset.zip is compressed 1,0")  # deflate's best: about 1,030 to 1
    assert message.endswith(
        " to 1, over data.max_compression_ratio (100): photos barely compress, so this looks like a zip bomb; "
        "raise the limit in params.yaml if this really is the dataset"
    )


def test_a_zip_of_many_small_bombs_is_refused_by_its_ratio_as_a_whole(tmp_path, raw_dir, no_extraction):
    """Members under 1 MB escape the per-member ratio: 2,000 of 1 MB of zeros each (a 4.2 MB zip) unpacked to
    2.0 GB. The same zip in small: 200 members of 100 KB of zeros, 19.5 MB from about 0.1 MB."""
    zip_path = tmp_path / "Dataset.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(200):
            archive.writestr(f"Dataset/train/a/{i:04d}.bmp", bytes(100_000))
    with zipfile.ZipFile(zip_path) as archive:
        packed = sum(member.compress_size for member in archive.infolist())
    with pytest.raises(DownloadError) as caught:
        download_dataset(str(zip_path), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    assert str(caught.value) == (
        f"Dataset.zip would unpack 200 members from {packed / 2**20:,.1f} MB to 19.1 MB, compressed "
        f"{20_000_000 / packed:,.0f} to 1 as a whole, over data.max_compression_ratio (100): photos barely "
        "compress, so this looks like a zip bomb; raise the limit in params.yaml if this really is the dataset"
    )
    assert 20_000_000 / packed > 100
    assert not raw_dir.exists() and _leftovers(raw_dir) == []


def test_the_whole_zip_ratio_is_the_same_limit_as_a_members(tmp_path, no_extraction):
    zip_path = tmp_path / "Dataset.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(30):
            archive.writestr(f"Dataset/train/a/{i:04d}.bmp", bytes(100_000))
    with zipfile.ZipFile(zip_path) as archive:
        ratio = 3_000_000 / sum(member.compress_size for member in archive.infolist())
        UnpackLimits(max_unpacked_mb=100, max_compression_ratio=ratio * 1.01).check(archive.infolist(), "Dataset.zip")
        with pytest.raises(DownloadError, match=r"compressed [\d,]+ to 1 as a whole, over data.max_compression_ratio"):
            UnpackLimits(max_unpacked_mb=100, max_compression_ratio=ratio * 0.99).check(archive.infolist(),
                                                                                        "Dataset.zip")


def test_small_members_may_compress_well(tmp_path):
    # A blank 100 KB image compresses far beyond 100 to 1 and is no danger.
    zip_path = _one_member_zip(tmp_path / "Dataset.zip", bytes(100_000), zipfile.ZIP_DEFLATED)
    extract_zip(zip_path, tmp_path / "out", LIMITS)
    assert (tmp_path / "out" / MEMBER).stat().st_size == 100_000


def test_a_central_directory_that_understates_a_size_gets_no_more_than_it_declares_out(tmp_path):
    # 3 MB of zeros that the zip's directory calls 1,000 bytes: the size and ratio checks both pass.
    zip_path = _one_member_zip(tmp_path / "lying.zip", bytes(3 * 2**20), zipfile.ZIP_DEFLATED)
    _rewrite_headers(zip_path, file_size=1000)
    with pytest.raises(DownloadError) as caught:
        extract_zip(zip_path, tmp_path / "out", LIMITS)
    assert str(caught.value) == (
        f"cannot unpack '{MEMBER}' from lying.zip: its data is corrupt (Bad CRC-32 for file '{MEMBER}'); "
        "download the zip again"
    )
    assert sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file()) <= 1000


def test_an_encrypted_member_is_named_before_unpacking(tmp_path, raw_dir, no_extraction):
    zip_path = _one_member_zip(tmp_path / "Dataset.zip", image_bytes())
    _rewrite_headers(zip_path, flag_bits=0x1)
    with pytest.raises(DownloadError) as caught:
        download_dataset(str(zip_path), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    assert str(caught.value) == (
        f"'{MEMBER}' in Dataset.zip is encrypted; unzip it with its password and zip the dataset again without one"
    )
    assert not raw_dir.exists() and _leftovers(raw_dir) == []


def test_a_deflate64_member_is_named_with_the_methods_python_can_unpack(tmp_path, raw_dir, no_extraction):
    zip_path = _one_member_zip(tmp_path / "Dataset.zip", image_bytes())
    _rewrite_headers(zip_path, compress_type=9)  # what Windows Explorer writes for files over 2 GB
    with pytest.raises(DownloadError) as caught:
        download_dataset(str(zip_path), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    assert str(caught.value) == (
        f"'{MEMBER}' in Dataset.zip is compressed with deflate64, which Python cannot unpack "
        "(it can: store, deflate, bzip2, lzma); zip the dataset again with plain deflate"
    )


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_corrupt_member_data_is_named_in_one_line(tmp_path, raw_dir, compression):
    zip_path = _one_member_zip(tmp_path / "Dataset.zip", image_bytes(size=(64, 64)), compression)
    with zipfile.ZipFile(zip_path) as archive:
        member = archive.infolist()[0]
        data_start = member.header_offset + 30 + len(member.filename) + len(member.extra)
    damaged = bytearray(zip_path.read_bytes())
    for offset in range(member.compress_size // 3, member.compress_size // 3 + 16):
        damaged[data_start + offset] ^= 0xFF
    zip_path.write_bytes(bytes(damaged))
    with pytest.raises(DownloadError) as caught:
        download_dataset(str(zip_path), drive_file="Dataset.zip", raw_dir=raw_dir, limits=LIMITS)
    message = str(caught.value)
    assert message.startswith(f"cannot unpack '{MEMBER}' from Dataset.zip: its data is corrupt (")
    assert message.endswith("); download the zip again") and "\n" not in message
    assert not raw_dir.exists() and _leftovers(raw_dir) == []


@pytest.mark.parametrize(("name", "value"), [("max_unpacked_mb", 0), ("max_compression_ratio", -1)])
def test_limits_must_be_positive_numbers(name, value):
    with pytest.raises(ValueError) as refused:
        UnpackLimits.from_params({**DATA_PARAMS, name: value})
    assert str(refused.value) == f"data.{name} must be a number > 0, got {value}"


@pytest.mark.skipif(not DEV_ZIP.is_file(), reason=f"{DEV_ZIP} is not on this machine")
def test_the_default_limits_let_the_real_photos_through():
    with zipfile.ZipFile(DEV_ZIP) as archive:
        LIMITS.check(archive.infolist(), DEV_ZIP.name)


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


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=www))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", www
    server.shutdown()
    server.server_close()


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
