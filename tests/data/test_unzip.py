"""Unpacking a zip within its limits (refused from the zip's directory, before anything is unpacked), damaged
zips named in one line, and finding the dataset's root inside what a zip held."""

import struct
import zipfile
from pathlib import Path

import pytest
from support import REPO_ROOT
from support.app_bundles import DEV_ZIP
from support.synthetic_images import image_bytes

from fish_classifier.data.unzip import DownloadError, UnpackLimits, extract_zip, find_dataset_root
from fish_classifier.params import load_params

DATA_PARAMS = load_params(REPO_ROOT / "params.yaml")["data"]
LIMITS = UnpackLimits.from_params(DATA_PARAMS)


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


def test_a_zip_that_unpacks_over_the_size_limit_is_refused_before_unpacking(tmp_path, no_extraction):
    zip_path = _one_member_zip(tmp_path / "Dataset.zip", bytes(3 * 2**20), zipfile.ZIP_DEFLATED)
    limits = UnpackLimits(max_unpacked_mb=2, max_compression_ratio=10_000)
    with pytest.raises(DownloadError) as caught:
        extract_zip(zip_path, tmp_path / "out", limits)
    assert str(caught.value) == (
        "Dataset.zip would unpack to 3.0 MB, over data.max_unpacked_mb (2 MB); "
        "raise it in params.yaml if this really is the dataset"
    )
    assert not (tmp_path / "out").exists()


def test_a_zip_bomb_is_refused_by_its_compression_ratio_before_unpacking(tmp_path, no_extraction):
    zip_path = _one_member_zip(tmp_path / "Dataset.zip", bytes(3 * 2**20), zipfile.ZIP_DEFLATED)
    with pytest.raises(DownloadError) as caught:
        extract_zip(zip_path, tmp_path / "out", LIMITS)
    message = str(caught.value)
    assert message.startswith(f"'{MEMBER}' in Dataset.zip is compressed 1,0")  # deflate's best: about 1,030 to 1
    assert message.endswith(
        " to 1, over data.max_compression_ratio (100): photos barely compress, so this looks like a zip bomb; "
        "raise the limit in params.yaml if this really is the dataset"
    )


def test_a_zip_of_many_small_bombs_is_refused_by_its_ratio_as_a_whole(tmp_path, no_extraction):
    """Members under 1 MB escape the per-member ratio: 2,000 of 1 MB of zeros each (a 4.2 MB zip) unpacked to
    2.0 GB. The same zip in small: 200 members of 100 KB of zeros, 19.5 MB from about 0.1 MB."""
    zip_path = tmp_path / "Dataset.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(200):
            archive.writestr(f"Dataset/train/a/{i:04d}.bmp", bytes(100_000))
    with zipfile.ZipFile(zip_path) as archive:
        packed = sum(member.compress_size for member in archive.infolist())
    with pytest.raises(DownloadError) as caught:
        extract_zip(zip_path, tmp_path / "out", LIMITS)
    assert str(caught.value) == (
        f"Dataset.zip would unpack 200 members from {packed / 2**20:,.1f} MB to 19.1 MB, compressed "
        f"{20_000_000 / packed:,.0f} to 1 as a whole, over data.max_compression_ratio (100): photos barely "
        "compress, so this looks like a zip bomb; raise the limit in params.yaml if this really is the dataset"
    )
    assert 20_000_000 / packed > 100
    assert not (tmp_path / "out").exists()


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


def test_an_encrypted_member_is_named_before_unpacking(tmp_path, no_extraction):
    zip_path = _one_member_zip(tmp_path / "Dataset.zip", image_bytes())
    _rewrite_headers(zip_path, flag_bits=0x1)
    with pytest.raises(DownloadError) as caught:
        extract_zip(zip_path, tmp_path / "out", LIMITS)
    assert str(caught.value) == (
        f"'{MEMBER}' in Dataset.zip is encrypted; unzip it with its password and zip the dataset again without one"
    )
    assert not (tmp_path / "out").exists()


def test_a_deflate64_member_is_named_with_the_methods_python_can_unpack(tmp_path, no_extraction):
    zip_path = _one_member_zip(tmp_path / "Dataset.zip", image_bytes())
    _rewrite_headers(zip_path, compress_type=9)  # what Windows Explorer writes for files over 2 GB
    with pytest.raises(DownloadError) as caught:
        extract_zip(zip_path, tmp_path / "out", LIMITS)
    assert str(caught.value) == (
        f"'{MEMBER}' in Dataset.zip is compressed with deflate64, which Python cannot unpack "
        "(it can: store, deflate, bzip2, lzma); zip the dataset again with plain deflate"
    )


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_corrupt_member_data_is_named_in_one_line(tmp_path, compression):
    zip_path = _one_member_zip(tmp_path / "Dataset.zip", image_bytes(size=(64, 64)), compression)
    with zipfile.ZipFile(zip_path) as archive:
        member = archive.infolist()[0]
        data_start = member.header_offset + 30 + len(member.filename) + len(member.extra)
    damaged = bytearray(zip_path.read_bytes())
    for offset in range(member.compress_size // 3, member.compress_size // 3 + 16):
        damaged[data_start + offset] ^= 0xFF
    zip_path.write_bytes(bytes(damaged))
    with pytest.raises(DownloadError) as caught:
        extract_zip(zip_path, tmp_path / "out", LIMITS)
    message = str(caught.value)
    assert message.startswith(f"cannot unpack '{MEMBER}' from Dataset.zip: its data is corrupt (")
    assert message.endswith("); download the zip again") and "\n" not in message


@pytest.mark.parametrize(("name", "value"), [("max_unpacked_mb", 0), ("max_compression_ratio", -1)])
def test_limits_must_be_positive_numbers(name, value):
    with pytest.raises(ValueError) as refused:
        UnpackLimits.from_params({**DATA_PARAMS, name: value})
    assert str(refused.value) == f"data.{name} must be a number > 0, got {value}"


@pytest.mark.skipif(not DEV_ZIP.is_file(), reason=f"{DEV_ZIP} is not on this machine")
def test_the_default_limits_let_the_real_photos_through():
    with zipfile.ZipFile(DEV_ZIP) as archive:
        LIMITS.check(archive.infolist(), DEV_ZIP.name)


# --- the dataset's root -------------------------------------------------------------------------


def test_the_shallowest_folder_with_the_three_splits_is_the_root_and_macos_litter_is_not(tmp_path):
    for split in ("train", "val", "test"):
        (tmp_path / "__MACOSX" / split).mkdir(parents=True)  # macOS's resource forks, shallower than the dataset
        (tmp_path / "Fish" / "Dataset" / split / "a").mkdir(parents=True)
        (tmp_path / "Fish" / "Dataset" / "copy" / split).mkdir(parents=True)  # deeper: not the root
    assert find_dataset_root(tmp_path) == tmp_path / "Fish" / "Dataset"
    for split in ("train", "val", "test"):
        (tmp_path / split).mkdir()
    assert find_dataset_root(tmp_path) == tmp_path


def test_zip_without_splits_lists_its_top_folders(tmp_path):
    zip_path = tmp_path / "photos.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("Dataset/data/training/a/1.jpg", image_bytes())
        archive.writestr("Dataset/data/testing/a/1.jpg", image_bytes())
        archive.writestr("Dataset/data/notes.txt", "hi")
        archive.writestr("__MACOSX/Dataset/._notes.txt", b"")
    extract_zip(zip_path, tmp_path / "out", LIMITS)
    with pytest.raises(DownloadError) as caught:
        find_dataset_root(tmp_path / "out", zip_name=zip_path.name)
    message = str(caught.value)
    assert "photos.zip has no folder holding train/, val/, test/" in message
    assert "its top folders are: Dataset/data/notes.txt, Dataset/data/testing/, Dataset/data/training/" in message
    assert "\n" not in message
