"""The dataset manifest: one row per usable image, and the class list taken from the train folders."""

import json
from pathlib import Path

import pandas as pd

MANIFEST_COLUMNS = ["path", "split", "label", "sha256", "width", "height", "augmented", "source"]
SPLITS = ("train", "val", "test")


def read_manifest(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"label": str, "source": str}, keep_default_na=False)


def read_classes(path: str | Path) -> list[dict]:
    """Classes in model output order: [{"label": raw folder name, "display": readable name}, ...]."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)["classes"]
