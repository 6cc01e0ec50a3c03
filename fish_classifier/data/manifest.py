"""The dataset manifest: one row per usable image, and the class list taken from the train folders."""

import json
import unicodedata
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from pydantic import ConfigDict

from fish_classifier.layout import SPLITS
from fish_classifier.params import Rule, Section

MANIFEST_COLUMNS = ["path", "split", "label", "sha256", "width", "height", "augmented", "source", "origin"]
# Where an original photo came from (`origin`): the dataset zip, or the users' feedback (data/feedback/train).
# Augmented copies and composites leave it empty: their `source` names the photo they were made from.
DATASET, FEEDBACK = "dataset", "feedback"

# The dataset's folder names lead with category words ("fish sea_food red_mullet");
# the species is what follows them.
GENERIC_WORDS = ("animal", "fish", "sea_food")


class CatchAllLabels(Section):
    """params.yaml's `data.catch_all_labels`: the classes of varied fish photographed anywhere (the dataset's
    `animal fish` and `animal fish bass`), where every market species was photographed in one studio; and
    `data.other_fish_labels`, those of them that name no species (`animal fish`: any other fish)."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # the rest of `data` is other settings' business

    catch_all_labels: Annotated[list[str], Rule("a list of class labels (strings)")]
    other_fish_labels: Annotated[list[str], Rule("a list of class labels (strings)")]  # name no species


class DatasetError(ValueError):
    """A dataset layout the pipeline cannot use; the message names the folder at fault."""


def read_manifest(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"label": str, "source": str, "origin": str}, keep_default_na=False)


def write_manifest(manifest: pd.DataFrame, path: str | Path) -> None:
    manifest.reindex(columns=MANIFEST_COLUMNS, fill_value="").to_csv(path, index=False)


# data/feedback/<part>/manifest.csv (train, field, not-fish: the feedback stage's outputs, read by three stages).
FEEDBACK_COLUMNS = ["path", "label", "sha256"]


def read_feedback_part(path: str | Path) -> pd.DataFrame:
    """A part of the feedback (FEEDBACK_COLUMNS); a missing manifest (the feedback stage has not run) is an empty part."""
    if not Path(path).is_file():
        return pd.DataFrame(columns=FEEDBACK_COLUMNS)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def scored_split(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of `split` that scores are computed on: its original images, never the augmented copies."""
    return manifest[(manifest["split"] == split) & ~manifest["augmented"].astype(bool)]


def example_photos(manifest: pd.DataFrame, classes: list[dict], split: str = "test") -> list[tuple[dict, str]]:
    """(class entry, path) of the first scored photo of each class in `split`, in manifest order: the same
    photos every run. In the order of `classes`; a class with no photo in `split` gets none."""
    first = scored_split(manifest, split).drop_duplicates("label")
    paths = dict(zip(first["label"], first["path"]))
    return [(entry, paths[entry["label"]]) for entry in classes if entry["label"] in paths]


# Why a split needs photos: validation chooses (when training stops, the model, its temperature, its thresholds)
# on every class; test gives every reported figure.
_SPLIT_USE = {
    "val": "validation chooses the model, its temperature and its thresholds, so every class needs photos there",
    "test": "every reported figure comes from test/, so it needs photos",
}


def check_scored_splits(manifest: pd.DataFrame, labels: list[str], splits: tuple[str, ...] = ("val", "test")) -> None:
    """Refuse a manifest whose val split misses a class of `labels` (or everything), or whose test split is empty.

    A class missing from test alone is allowed (prepare warns): nothing is chosen on test, and the other classes'
    figures stand. Raises DatasetError naming the split and the classes.
    """
    for split in splits:
        present = set(scored_split(manifest, split)["label"])
        missing = [label for label in labels if label not in present]
        if not present:
            raise DatasetError(f"{split}/ has no usable photo; {_SPLIT_USE[split]}")
        if missing and split == "val":
            raise DatasetError(
                f"{split}/ has no usable photo of {len(missing)} of the {len(labels)} classes: "
                f"{', '.join(map(repr, missing))}; {_SPLIT_USE[split]}"
            )


def read_classes(path: str | Path) -> list[dict]:
    """Classes in model output order: [{"label": raw folder name, "display": readable name}, ...]."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)["classes"]


def label_indices(labels, classes: list[dict]) -> np.ndarray:
    """Map raw labels to model output indices; the order of `classes` is the one source of truth."""
    index = {entry["label"]: i for i, entry in enumerate(classes)}
    unknown = sorted(set(labels) - index.keys())
    if unknown:
        raise ValueError(f"labels not in classes.json: {', '.join(unknown)}")
    return np.array([index[label] for label in labels], dtype=np.int32)


def write_classes(classes: list[dict], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"classes": classes}, f, indent=2, ensure_ascii=False)
        f.write("\n")


def display_name(label: str, overrides: dict[str, str] | None = None) -> str:
    """A readable name for a raw class folder name.

    The leading category words (animal, fish, sea_food) are dropped unless nothing
    would be left, underscores become spaces and the first letter is capitalised:
    `fish sea_food red_mullet` -> `Red mullet`, `animal fish bass` -> `Bass`,
    `animal fish` -> `Animal fish`. An entry in `overrides` (params
    `prepare.display_names`) wins over the rule.
    """
    if overrides and label in overrides:
        return overrides[label]
    words = label.split()
    species = words
    while species and species[0].lower() in GENERIC_WORDS:
        species = species[1:]
    name = " ".join(species or words).replace("_", " ")
    name = " ".join(name.split())
    return name[:1].upper() + name[1:]


def find_classes(raw_dir: str | Path, overrides: dict[str, str] | None = None) -> list[dict]:
    """The class list, from the folders of `raw_dir/train`, sorted by label.

    Raises DatasetError for two folders of a split whose names differ only in Unicode form
    (one class, two spellings), for a class folder found in val/ or test/ but not in train/
    (the model could never learn it), and for two classes with the same display name.
    """
    raw_dir = Path(raw_dir)
    folders = {split: _class_folders(raw_dir / split) for split in SPLITS}
    for split, names in folders.items():
        _refuse_lookalike_names(raw_dir / split, names)
    labels = sorted(folders["train"])
    if not labels:
        raise DatasetError(f"{raw_dir / 'train'} has no class folders; the class list comes from them")
    for split in SPLITS[1:]:
        unknown = sorted(set(folders[split]) - set(labels))
        if unknown:
            raise DatasetError(
                f"class folder {', '.join(map(repr, unknown))} is in {split}/ but not in train/; "
                f"every class needs training images (train/ has: {', '.join(labels)})"
            )
    classes = [{"label": label, "display": display_name(label, overrides)} for label in labels]
    seen: dict[str, str] = {}
    for entry in classes:
        if entry["display"] in seen:
            raise DatasetError(
                f"classes {seen[entry['display']]!r} and {entry['label']!r} both get the display name "
                f"{entry['display']!r}; give one of them its own name in params prepare.display_names"
            )
        seen[entry["display"]] = entry["label"]
    return classes


def _refuse_lookalike_names(split_dir: Path, names: list[str]) -> None:
    # macOS and some zip tools write 'é' as e plus a combining accent (NFD): it looks the same, but is another folder.
    seen: dict[str, str] = {}
    for name in sorted(names):
        key = unicodedata.normalize("NFC", name)
        if key in seen:
            raise DatasetError(
                f"class folders {ascii(seen[key])} and {ascii(name)} in {split_dir} are one name in two Unicode forms; "
                "rename or merge them so that the class has one folder"
            )
        seen[key] = name


def _class_folders(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir} is missing; the dataset root must hold {', '.join(SPLITS)}")
    # Hidden folders (.ipynb_checkpoints, ...) are tool litter, not classes.
    return [d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith(".")]
