"""End to end: the real `dvc repro augment` on a tiny dataset zip, in a temporary copy of the repository."""

import json
import zipfile
from pathlib import Path

import pytest
import yaml
from PIL import Image
from support.repo_copy import copy_repo, dvc
from support.synthetic_images import dataset_files, image_bytes, truncated_jpeg_bytes

from fish_classifier.data.manifest import read_classes, read_manifest

CLASSES = ("animal fish", "animal fish bass", "fish sea_food red_mullet")
TRAIN = {"animal fish": 4, "animal fish bass": 2, "fish sea_food red_mullet": 4}
MIN_PER_CLASS = 6

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A repo copy whose `dvc repro augment` has run once on a tiny zip with bad files and a leak."""
    root = tmp_path_factory.mktemp("e2e")
    files = dataset_files(CLASSES, {"train": TRAIN, "val": 1, "test": 1})
    files |= {
        "train/animal fish/truncated.jpg": truncated_jpeg_bytes(),
        "train/animal fish/notes.jpg": b"not a photo\n",
        "train/animal fish/cmyk.jpg": image_bytes("CMYK", seed=101),
        "train/animal fish/sixteen.png": image_bytes("I;16", seed=102),
        # A training photo that was also put in val: leakage.
        "val/animal fish/leaked.jpg": files["train/animal fish/000.jpg"],
    }
    with zipfile.ZipFile(root / "Dataset.zip", "w") as archive:
        for name, data in files.items():
            archive.writestr(f"Dataset/images.cv_tiny/data/{name}", data)

    repo = copy_repo(root / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["source"] = "../Dataset.zip"  # relative to the repo root, like ../shared/data/fish-dev.zip
    params["augment"]["min_per_class"] = MIN_PER_CLASS
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    first = dvc(repo, "repro", "augment")
    for stage in ("download", "prepare", "augment"):
        assert f"Running stage '{stage}'" in first.stdout
    return repo


def test_manifest_lists_every_usable_original(repo):
    manifest = read_manifest(repo / "data" / "manifest.csv")
    train = manifest[manifest["split"] == "train"]["label"].value_counts().to_dict()
    # animal fish: 4 photos + the CMYK and 16-bit files, kept as RGB; the truncated and text files left out.
    assert train == {"animal fish": 6, "animal fish bass": 2, "fish sea_food red_mullet": 4}
    assert manifest["split"].value_counts().to_dict() == {"train": 12, "val": 4, "test": 3}
    assert not manifest["augmented"].any()
    for path in manifest["path"]:
        assert path.startswith("data/prepared/") and (repo / path).is_file()


def test_classes_come_from_train_with_display_names(repo):
    assert read_classes(repo / "data" / "classes.json") == [
        {"label": "animal fish", "display": "Animal fish"},
        {"label": "animal fish bass", "display": "Bass"},
        {"label": "fish sea_food red_mullet", "display": "Red mullet"},
    ]


def test_report_lists_the_bad_files_and_the_leak(repo):
    report = json.loads((repo / "data" / "prepare_report.json").read_text())
    skipped = {Path(row["path"]).name: row["reason"] for row in report["skipped"]}
    assert set(skipped) == {"truncated.jpg", "notes.jpg"}
    assert "truncated" in skipped["truncated.jpg"] and "not a readable image" in skipped["notes.jpg"]
    assert report["skipped_files"] == 2
    assert report["images"] == {"train": 12, "val": 4, "test": 3}
    assert report["exact_duplicates"] == {"train-val": 1, "train-test": 0, "val-test": 0}
    assert report["exact_duplicate_pairs"]["train-val"] == [
        {"train": "data/prepared/train/animal fish/000.jpg", "val": "data/prepared/val/animal fish/leaked.jpg"}
    ]
    # The picture of the near duplicates: none here, and the exact one named in its title, not drawn.
    with Image.open(repo / "data" / "near_duplicates.png") as sheet:
        assert sheet.text["Description"] == "No near-duplicate pairs across splits"
        assert sheet.text["Title"].endswith(
            "\nExact duplicates (identical files), listed in prepare_report.json and not drawn: 1")


def test_small_train_classes_are_raised_to_the_minimum(repo):
    augmented = read_manifest(repo / "data" / "augmented" / "manifest.csv")
    assert augmented["label"].value_counts().to_dict() == {"animal fish bass": 4, "fish sea_food red_mullet": 2}
    assert augmented["augmented"].all() and (augmented["split"] == "train").all()
    for row in augmented.itertuples():
        assert (repo / row.path).is_file() and row.source.startswith(f"data/prepared/train/{row.label}/")


def test_download_record_names_the_zip(repo):
    record = json.loads((repo / "data" / "download.json").read_text())
    assert record["source"] == "../Dataset.zip"
    assert record["dataset_root"] == "Dataset/images.cv_tiny/data"
    assert len(record["sha256"]) == 64


def test_a_second_run_has_nothing_to_do(repo):
    second = dvc(repo, "repro", "augment")
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout
    status = dvc(repo, "status", "--with-deps", "augment")
    assert "Data and pipelines are up to date" in status.stdout
