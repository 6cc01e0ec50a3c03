import hashlib
import zipfile

import pandas as pd
import pytest
from PIL import Image
from support.synthetic_images import image_bytes

from fish_classifier.data import outlier_set
from fish_classifier.data.unzip import DownloadError, UnpackLimits
from fish_classifier.data.outlier_set import collect_outlier_pool

LIMITS = UnpackLimits(max_unpacked_mb=100, max_compression_ratio=100)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def world(tmp_path):
    """A source corpus, a not-fish feedback photo, and the val, test and unknown photos the pool must not overlap."""
    test_photo, unknown_photo = image_bytes(seed=1), image_bytes(seed=2)
    for path, data in {"data/prepared/test/a/t.jpg": test_photo, "data/prepared/val/a/v.jpg": image_bytes(seed=3),
                       "data/unknown/photos/not-fish/u.jpg": unknown_photo}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    protected = pd.DataFrame([["data/prepared/val/a/v.jpg", "val"], ["data/prepared/test/a/t.jpg", "test"],
                              ["data/unknown/photos/not-fish/u.jpg", "unknown"]], columns=["path", "set"])
    protected["path"] = [str(tmp_path / path) for path in protected["path"]]

    source = tmp_path / "corpus"
    (source / "n01_cat" / "images").mkdir(parents=True)
    (source / "loose").mkdir()
    files = {
        "n01_cat/images/cat.jpg": image_bytes(seed=10),
        "n01_cat/images/cat2.jpg": image_bytes(seed=10),  # the same file twice: kept once
        "loose/dog.png": image_bytes(seed=11, format="PNG"),
        "loose/test-copy.jpg": test_photo,  # a test photo: dropped
        "broken.jpg": b"\xff\xd8 not a jpeg",
    }
    for name, data in files.items():
        (source / name).write_bytes(data)
    with Image.open(tmp_path / "data/unknown/photos/not-fish/u.jpg") as unknown:
        unknown.save(source / "loose" / "unknown-reencoded.jpg", quality=60)  # near the measuring set: dropped

    not_fish_photo = image_bytes(seed=12)
    exported = tmp_path / "data" / "feedback" / "not-fish" / f"{sha(not_fish_photo)}.jpg"
    exported.parent.mkdir(parents=True)
    exported.write_bytes(not_fish_photo)
    (exported.parent / f"{sha(image_bytes(seed=11, format='PNG'))}.png").write_bytes(image_bytes(seed=11, format="PNG"))
    not_fish = pd.DataFrame([[str(path), "not-fish", sha(path.read_bytes())] for path in sorted(exported.parent.iterdir())],
                            columns=["path", "label", "sha256"])
    return {"root": tmp_path, "source": source, "not_fish": not_fish, "protected": protected,
            "unknown_photo": unknown_photo}


def collect(world, source=None, out="data/outliers"):
    out = world["root"] / out
    pool = collect_outlier_pool(str(world["source"] if source is None else source), world["not_fish"],
                                world["protected"], out, LIMITS, hash_size=8, max_distance=4)
    return pool, out


def expected_rows(out):
    return [
        [f"{out.as_posix()}/feedback/{sha(image_bytes(seed=12))}.jpg", "feedback", sha(image_bytes(seed=12))],
        [f"{out.as_posix()}/photos/loose/dog.png", "outlier_source", sha(image_bytes(seed=11, format="PNG"))],
        [f"{out.as_posix()}/photos/n01_cat/images/cat.jpg", "outlier_source", sha(image_bytes(seed=10))],
    ]


def test_the_pool_keeps_each_photo_once_and_drops_duplicates_of_test_and_the_measuring_set(world):
    pool, out = collect(world)
    assert sorted(pool.manifest.values.tolist()) == expected_rows(out)
    assert list(pool.manifest.columns) == ["path", "origin", "sha256"]
    assert pool.dropped == {"val": 0, "test": 1, "unknown": 1}
    assert pool.repeats == 2  # cat2.jpg, and the feedback's copy of dog.png
    assert [entry["path"] for entry in pool.skipped] == ["photos/broken.jpg"]
    # What is not in the manifest is not in the folder either: a reader of the folder sees the pool.
    on_disk = sorted(path.as_posix() for path in out.rglob("*") if path.is_file())
    assert on_disk == sorted(row[0] for row in expected_rows(out))


def test_the_pool_never_touches_the_measuring_set(world):
    unknown = world["root"] / "data" / "unknown"
    before = {path: path.read_bytes() for path in unknown.rglob("*") if path.is_file()}
    pool, _ = collect(world)
    assert {path: path.read_bytes() for path in unknown.rglob("*") if path.is_file()} == before
    assert before[unknown / "photos" / "not-fish" / "u.jpg"] == world["unknown_photo"]
    assert not pool.manifest["path"].str.contains("data/unknown").any()


def test_a_zip_source_and_many_photos_at_once_give_the_same_pool(world, monkeypatch):
    archive = world["root"] / "corpus.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(world["source"].rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(world["source"]).as_posix())
    monkeypatch.setattr(outlier_set, "_PARALLEL_FROM", 1)  # the process pool a 19,300-photo corpus gets
    pool, out = collect(world, source=archive, out="zipped")
    assert sorted(pool.manifest.values.tolist()) == expected_rows(out)
    assert pool.dropped == {"val": 0, "test": 1, "unknown": 1}


def test_no_source_and_no_feedback_is_an_empty_pool_and_a_missing_source_says_what_to_set(world):
    world["not_fish"] = world["not_fish"].head(0)
    pool, out = collect(world, source="")
    assert pool.manifest.empty and list(pool.manifest.columns) == ["path", "origin", "sha256"]
    with pytest.raises(DownloadError) as error:
        collect(world, source="nowhere.zip")
    assert str(error.value) == ("data.outlier_source 'nowhere.zip' is neither a zip nor a folder; "
                                'set it to one, or to "" for no outlier source')
