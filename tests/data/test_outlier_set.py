import hashlib
import io
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from PIL import Image
from support import REPO_ROOT as REPO
from support.synthetic_images import image_bytes

from fish_classifier.data import outlier_set
from fish_classifier.data.unzip import DownloadError
from fish_classifier.data.outlier_draw import OutlierSetSettings, draw_outlier_source
from fish_classifier.data.outlier_set import OutlierSourceError, collect_outlier_pool

LIMITS = {"max_unpacked_mb": 100, "max_compression_ratio": 100}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def reencoded(data: bytes, quality: int = 60) -> bytes:
    """The same picture saved again: another file, a near duplicate."""
    out = io.BytesIO()
    with Image.open(io.BytesIO(data)) as image:
        image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


FISH = {"train": image_bytes(seed=4), "val": image_bytes(seed=3), "test": image_bytes(seed=1)}
UNKNOWN = image_bytes(seed=2)


@pytest.fixture
def world(tmp_path):
    """A source corpus, the not-fish feedback, the fish (a photo per split) and the measuring set (one photo)."""
    fish_rows = []
    for split, data in FISH.items():
        path = tmp_path / f"data/prepared/{split}/a/{split}.jpg"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        fish_rows.append([str(path), split, sha(data), False])
    fish = pd.DataFrame(fish_rows, columns=["path", "split", "sha256", "augmented"])
    unknown_path = tmp_path / "data/unknown/photos/not-fish/u.jpg"
    unknown_path.parent.mkdir(parents=True)
    unknown_path.write_bytes(UNKNOWN)
    unknown = pd.DataFrame([[str(unknown_path), "not-fish"]], columns=["path", "group"])

    source = tmp_path / "corpus"
    files = {
        "n01_cat/images/cat.jpg": image_bytes(seed=10),
        "n01_cat/images/cat2.jpg": image_bytes(seed=10),  # the same file twice: kept once
        "loose/dog.png": image_bytes(seed=11, format="PNG"),
        "loose/test-reencoded.jpg": reencoded(FISH["test"]),  # near a test photo: dropped
        "loose/unknown-reencoded.jpg": reencoded(UNKNOWN),  # near the measuring set: dropped
        "broken.jpg": b"\xff\xd8 not a jpeg",
    }
    for name, data in files.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)

    exported = tmp_path / "data" / "feedback" / "not-fish"
    exported.mkdir(parents=True)
    for data, suffix in ((image_bytes(seed=12), ".jpg"), (image_bytes(seed=11, format="PNG"), ".png"),
                         (FISH["val"], ".jpg"),  # a user's not-fish that is a val photo: dropped, never refused
                         (reencoded(FISH["test"], quality=70), ".jpg")):  # near a test photo: dropped too
        (exported / f"{sha(data)}{suffix}").write_bytes(data)
    not_fish = pd.DataFrame([[str(path), "not-fish", sha(path.read_bytes())] for path in sorted(exported.iterdir())],
                            columns=["path", "label", "sha256"])
    return {"root": tmp_path, "source": source, "not_fish": not_fish, "fish": fish, "unknown": unknown}


def collect(world, source=None, out="data/outliers", exclude=(), photos=0, seed=0):
    """Both steps, as the two stages run them: the draw into `out`-draw, then the pool into `out`; what each
    counted, as one namespace (the pool's manifest, repeats and dropped, the draw's excluded and not_drawn, and
    the files either skipped)."""
    out = world["root"] / out
    settings = OutlierSetSettings(outlier_source=str(world["source"] if source is None else source),
                                  outlier_exclude=list(exclude), outlier_photos=photos, **LIMITS)
    drawn = draw_outlier_source(settings, out.with_name(f"{out.name}-draw"), seed=seed)
    pool = collect_outlier_pool(out.with_name(f"{out.name}-draw"), world["not_fish"], world["fish"],
                                world["unknown"], out, hash_size=8, max_distance=4)
    return SimpleNamespace(manifest=pool.manifest, repeats=pool.repeats, dropped=pool.dropped,
                           excluded=drawn.excluded, not_drawn=drawn.not_drawn,
                           skipped=[*drawn.skipped, *pool.skipped]), out


def expected_rows(out):
    return [
        [f"{out.as_posix()}/feedback/{sha(image_bytes(seed=12))}.jpg", "feedback", sha(image_bytes(seed=12))],
        [f"{out.as_posix()}/photos/loose/dog.png", "outlier_source", sha(image_bytes(seed=11, format="PNG"))],
        [f"{out.as_posix()}/photos/n01_cat/images/cat.jpg", "outlier_source", sha(image_bytes(seed=10))],
    ]


def test_the_pool_keeps_each_photo_once_and_drops_duplicates_of_val_test_and_the_measuring_set(world):
    pool, out = collect(world)
    assert sorted(pool.manifest.values.tolist()) == expected_rows(out)
    assert list(pool.manifest.columns) == ["path", "origin", "sha256"]
    # The feedback's copy of a val photo and its near duplicate of a test photo are dropped, not refused.
    assert pool.dropped == {"val": 1, "test": 2, "unknown": 1}
    assert pool.repeats == 2  # cat2.jpg, and the feedback's copy of dog.png
    assert pool.excluded == 0
    assert [entry["path"] for entry in pool.skipped] == ["photos/broken.jpg"]
    # What is not in the manifest is not in the folder either: a reader of the folder sees the pool.
    on_disk = sorted(path.as_posix() for path in out.rglob("*") if path.is_file())
    assert on_disk == sorted(row[0] for row in expected_rows(out))


def test_folders_that_outlier_exclude_names_are_left_out_in_any_case_and_counted(world):
    for seed, name in enumerate(("N01443537_GoldFish/images/gold.jpg", "N01443537_GoldFish/images/gold2.jpg")):
        (world["source"] / name).parent.mkdir(parents=True, exist_ok=True)
        (world["source"] / name).write_bytes(image_bytes(seed=20 + seed))
    (world["source"] / "goldfish.jpg").write_bytes(image_bytes(seed=30))  # a file's own name is no folder
    pool, out = collect(world, exclude=["*goldfish*"])
    assert pool.excluded == 2
    kept = {path.removeprefix(f"{out.as_posix()}/photos/") for path in pool.manifest["path"]}
    assert "goldfish.jpg" in kept and not any("GoldFish" in path for path in kept)
    assert not (out / "photos" / "N01443537_GoldFish" / "images" / "gold.jpg").exists()


def test_the_pool_never_touches_the_measuring_set(world):
    unknown = world["root"] / "data" / "unknown"
    before = {path: path.read_bytes() for path in unknown.rglob("*") if path.is_file()}
    pool, _ = collect(world)
    assert {path: path.read_bytes() for path in unknown.rglob("*") if path.is_file()} == before
    assert before[unknown / "photos" / "not-fish" / "u.jpg"] == UNKNOWN
    assert not pool.manifest["path"].str.contains("data/unknown").any()


def test_a_source_photo_that_is_a_fish_photo_is_refused_naming_both_and_the_way_out(world):
    (world["source"] / "Copies").mkdir()
    (world["source"] / "Copies" / "train-copy.jpg").write_bytes(FISH["train"])
    with pytest.raises(OutlierSourceError) as error:
        collect(world)
    assert str(error.value) == (
        "data.outlier_source holds 1 photo of the fish (data/manifest.csv), the same files by sha256: "
        f"Copies/train-copy.jpg is {world['fish']['path'][0]}. The outlier pool fits the unknown-photo detector, "
        "so it must hold no fish and none of the photos that measure it. Remove those photos from the source, or "
        "leave their folders out with data.outlier_exclude (their folders: Copies)")


def test_a_source_photo_that_is_a_measuring_set_photo_is_refused_whatever_else_is_wrong(world):
    (world["source"] / "loose" / "unknown-copy.jpg").write_bytes(UNKNOWN)
    (world["source"] / "loose" / "val-copy.jpg").write_bytes(FISH["val"])
    (world["source"] / "test-copy.jpg").write_bytes(FISH["test"])  # at the top: no folder to exclude
    with pytest.raises(OutlierSourceError) as error:
        collect(world)
    message = str(error.value)
    assert message.startswith("data.outlier_source holds 2 photos of the fish (data/manifest.csv) and 1 photo of "
                              "the measuring set (data/unknown), the same files by sha256: ")
    assert f"loose/unknown-copy.jpg is {world['unknown']['path'][0]}" in message
    assert f"test-copy.jpg is {world['fish']['path'][2]}" in message
    assert message.endswith("leave their folders out with data.outlier_exclude (their folders: loose)")


def test_excluding_the_offending_folder_is_the_way_out(world):
    (world["source"] / "Copies").mkdir()
    (world["source"] / "Copies" / "train-copy.jpg").write_bytes(FISH["train"])
    (world["source"] / "Copies" / "unknown-copy.jpg").write_bytes(UNKNOWN)
    pool, out = collect(world, exclude=["copies"])
    assert pool.excluded == 2
    assert sorted(pool.manifest.values.tolist()) == expected_rows(out)


def test_a_zip_source_and_many_photos_at_once_give_the_same_pool(world, monkeypatch):
    archive = world["root"] / "corpus.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(world["source"].rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(world["source"]).as_posix())
    monkeypatch.setattr(outlier_set, "_PARALLEL_FROM", 1)  # the process pool a 19,300-photo corpus gets
    pool, out = collect(world, source=archive, out="zipped")
    assert sorted(pool.manifest.values.tolist()) == expected_rows(out)
    assert pool.dropped == {"val": 1, "test": 2, "unknown": 1}


def test_no_source_and_no_feedback_is_an_empty_pool_and_a_missing_source_says_what_to_set(world):
    world["not_fish"] = world["not_fish"].head(0)
    pool, out = collect(world, source="")
    assert pool.manifest.empty and list(pool.manifest.columns) == ["path", "origin", "sha256"]
    with pytest.raises(DownloadError) as error:
        collect(world, source="nowhere.zip")
    assert str(error.value) == ("data.outlier_source 'nowhere.zip' is neither a zip, a folder nor an https URL to "
                                'a zip; set it to one, or to "" for no outlier source')


def test_at_most_outlier_photos_are_drawn_by_the_seed_after_exclusion_and_only_they_are_unpacked(world):
    source = world["root"] / "big"
    for i in range(12):
        (source / "cats" / f"{i:02d}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (source / "cats" / f"{i:02d}.jpg").write_bytes(image_bytes(seed=100 + i))
    for i in range(2):
        (source / "goldfish" / f"{i}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (source / "goldfish" / f"{i}.jpg").write_bytes(image_bytes(seed=200 + i))
    (source / "notes.txt").write_text("no photo by its name: never unpacked, never drawn")
    world["not_fish"] = world["not_fish"].head(0)

    def drawn(seed, out):
        pool, out = collect(world, source=source, out=out, exclude=["goldfish"], photos=5, seed=seed)
        unpacked = sorted(p.relative_to(out / "photos").as_posix() for p in (out / "photos").rglob("*") if p.is_file())
        return pool, unpacked

    pool, unpacked = drawn(7, "a")
    assert (len(pool.manifest), pool.excluded, pool.not_drawn, pool.skipped) == (5, 2, 7, [])
    assert len(unpacked) == 5 and all(name.startswith("cats/") for name in unpacked)
    assert drawn(7, "b")[1] == unpacked  # the same seed draws the same photos
    assert drawn(8, "c")[1] != unpacked
    everything, _ = collect(world, source=source, out="d", exclude=["goldfish"], photos=0)
    assert (len(everything.manifest), everything.not_drawn) == (12, 0)  # 0: all of them


def tiny_imagenet_zip(path):
    """A zip in Tiny ImageNet's layout: train/<wnid>/images/ per class (with a boxes file), val/images/ and
    test/images/ with every class in one folder."""
    with zipfile.ZipFile(path, "w") as archive:
        for i, (name, data) in enumerate({
            "train/n02123045/images/n02123045_0.JPEG": image_bytes(seed=40),  # tabby cat: kept
            "train/n02123045/images/n02123045_1.JPEG": image_bytes(seed=41),
            "train/n04398044/images/n04398044_0.JPEG": image_bytes(seed=42),  # teapot: kept
            "train/n01443537/images/n01443537_0.JPEG": image_bytes(seed=43),  # goldfish: left out
            "train/n09256479/images/n09256479_0.JPEG": image_bytes(seed=44),  # coral reef: left out
            "val/images/val_0.JPEG": image_bytes(seed=45),  # any class, goldfish too: left out
            "test/images/test_0.JPEG": image_bytes(seed=46),
        }.items()):
            archive.writestr(f"tiny-imagenet-200/{name}", data)
        archive.writestr("tiny-imagenet-200/train/n02123045/n02123045_boxes.txt", "n02123045_0.JPEG\t0\t0\t63\t63\n")
        archive.writestr("tiny-imagenet-200/wnids.txt", "n02123045\nn04398044\nn01443537\nn09256479\n")
    return path


def test_the_default_source_is_downloaded_and_its_fish_and_sea_classes_val_and_test_are_left_out(world,
                                                                                                  local_server):
    defaults = yaml.safe_load((REPO / "params.yaml").read_text())["data"]
    assert defaults["outlier_source"].startswith("https://") and defaults["outlier_source"].endswith(".zip")
    base, www = local_server
    tiny_imagenet_zip(www / "tiny-imagenet-200.zip")
    world["not_fish"] = world["not_fish"].head(0)
    pool, out = collect(world, source=f"{base}/tiny-imagenet-200.zip", exclude=defaults["outlier_exclude"],
                        photos=defaults["outlier_photos"])
    kept = sorted(Path(path).relative_to(out / "photos").as_posix() for path in pool.manifest["path"])
    assert kept == ["tiny-imagenet-200/train/n02123045/images/n02123045_0.JPEG",
                    "tiny-imagenet-200/train/n02123045/images/n02123045_1.JPEG",
                    "tiny-imagenet-200/train/n04398044/images/n04398044_0.JPEG"]
    assert (pool.excluded, pool.not_drawn, pool.skipped) == (4, 0, [])  # the boxes and wnids files: not photos
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(Path(k).name for k in kept)


def _stage(root, env=None, **data):
    """Run stages/outlier_source.py, then (when it succeeds) stages/outliers.py in `root`, params.yaml's `data`
    changed by `data`; the last run, its output after the first's."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(data)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    runs = []
    for stage in ("outlier_source", "outliers"):
        runs.append(subprocess.run([sys.executable, str(REPO / "stages" / f"{stage}.py")], cwd=root,
                                   capture_output=True, text=True, timeout=300,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}))
        if runs[-1].returncode:
            break
    runs[-1].stdout = "".join(run.stdout for run in runs)
    return runs[-1]


def test_offline_the_default_source_fails_in_seconds_naming_the_key_and_how_to_use_a_local_copy(tmp_path):
    with socket.socket() as probe:  # a proxy port that nobody listens on: no traffic leaves 127.0.0.1
        probe.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{probe.getsockname()[1]}"
    (tmp_path / "data/unknown").mkdir(parents=True)
    (tmp_path / "data/unknown/manifest.csv").write_text("path,group\n")
    (tmp_path / "data/manifest.csv").write_text("path,split,label,sha256,width,height,augmented,source,origin\n")
    start = time.perf_counter()
    run = _stage(tmp_path, env={name: proxy for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")}
                 | {"NO_PROXY": "", "no_proxy": ""})
    assert time.perf_counter() - start < 60 and run.returncode == 1 and "Traceback" not in run.stderr
    url = yaml.safe_load((REPO / "params.yaml").read_text())["data"]["outlier_source"]
    assert run.stderr.strip().splitlines()[-1] == (
        f"outlier_source failed: cannot download {url} (no network connection to the server). Download the zip "
        "by hand, then set data.outlier_source to its path in params.yaml (or run `dvc exp run -S "
        "data.outlier_source=path/to/tiny-imagenet-200.zip`)")
    assert not (tmp_path / "data/outliers/manifest.csv").exists()
    assert not (tmp_path / "data/outlier_source/photos").exists()  # nothing half-unpacked


def test_the_stage_refuses_a_source_that_holds_a_fish_photo_until_its_folder_is_excluded(tmp_path):
    rows = ["path,split,label,sha256,width,height,augmented,source,origin"]
    for split, data in FISH.items():
        (tmp_path / f"data/prepared/{split}/a").mkdir(parents=True)
        (tmp_path / f"data/prepared/{split}/a/f.jpg").write_bytes(data)
        rows.append(f"data/prepared/{split}/a/f.jpg,{split},a,{sha(data)},32,32,False,,dataset")
    (tmp_path / "data/manifest.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "data/unknown/photos").mkdir(parents=True)
    (tmp_path / "data/unknown/photos/u.jpg").write_bytes(UNKNOWN)
    (tmp_path / "data/unknown/manifest.csv").write_text("path,group\ndata/unknown/photos/u.jpg,not-fish\n")
    source = tmp_path / "corpus"
    for name, data in {"n01_fish/f.jpg": FISH["train"], "n02_cat/c.jpg": image_bytes(seed=10)}.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)

    refused = _stage(tmp_path, outlier_source="corpus", outlier_exclude=[])
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith(
        "outliers failed: data.outlier_source holds 1 photo of the fish (data/manifest.csv), the same files by "
        "sha256: n01_fish/f.jpg is data/prepared/train/a/f.jpg.")

    run = _stage(tmp_path, outlier_source="corpus", outlier_exclude=["N01_FISH"])
    assert run.returncode == 0, run.stderr[-2000:]
    assert "1 photos drawn from corpus: 1 left out by data.outlier_exclude, 0 not drawn (data.outlier_photos), " \
        "0 files skipped" in run.stdout
    assert ("1 outlier photos (1 from outlier_source), 0 repeats kept once; dropped as duplicates: 0 of val, 0 of "
            "test, 0 of unknown; 0 files skipped") in run.stdout
    assert pd.read_csv(tmp_path / "data/outliers/manifest.csv")["path"].tolist() == [
        "data/outliers/photos/n02_cat/c.jpg"]
