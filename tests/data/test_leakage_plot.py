import numpy as np
from PIL import Image

from fish_classifier.data.leakage_plot import closest_near_duplicates, plot_near_duplicates

FLAT = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200), "grey": (128, 128, 128)}
NAMES = {"fish red": "Red mullet", "fish green": "Bass"}


def _photos(folder) -> dict[str, str]:
    """One flat-coloured photo per colour, by colour."""
    paths = {}
    for colour, rgb in FLAT.items():
        paths[colour] = str(folder / f"{colour}.png")
        Image.new("RGB", (40, 30), rgb).save(paths[colour])
    return paths


def _pixels_of(png, colour: str) -> int:
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    return int((np.abs(pixels - FLAT[colour]).max(axis=2) <= 3).sum())


def _leaks(near: dict, exact: int = 0) -> dict:
    return {
        "exact_duplicates": {"train-val": exact, "train-test": 0, "val-test": 0},
        "near_duplicates": {pair: len(rows) for pair, rows in near.items()},
        "near_duplicate_pairs": near,
    }


def test_closest_pairs_come_first_across_every_split_pair():
    near = {
        "train-val": [{"train": "t1", "val": "v1", "distance": 3}],
        "train-test": [{"train": "t2", "test": "s2", "distance": 1}],
        "val-test": [{"val": "v3", "test": "s3", "distance": 3}, {"val": "v4", "test": "s4", "distance": 0}],
    }
    assert closest_near_duplicates(near, limit=3) == [
        {"splits": ("val", "test"), "paths": ("v4", "s4"), "distance": 0},
        {"splits": ("train", "test"), "paths": ("t2", "s2"), "distance": 1},
        {"splits": ("train", "val"), "paths": ("t1", "v1"), "distance": 3},  # ties keep train-val first
    ]


def test_the_sheet_draws_the_closest_pairs_side_by_side_with_splits_classes_and_distance(tmp_path):
    photos = _photos(tmp_path)
    label_of = {photos["red"]: "fish red", photos["green"]: "fish red", photos["blue"]: "fish green",
                photos["grey"]: "fish green"}
    near = {
        "train-val": [{"train": photos["blue"], "val": photos["grey"], "distance": 4}],
        "train-test": [{"train": photos["red"], "test": photos["green"], "distance": 2}],
        "val-test": [],
    }
    plot_near_duplicates(_leaks(near, exact=3), label_of, NAMES, tmp_path / "pairs.png", limit=1, max_distance=4)

    with Image.open(tmp_path / "pairs.png") as sheet:
        assert sheet.size == (650, 300)  # one pair per row: a row of 2.4 inches and the title's 0.6, at 100 dpi
        assert sheet.text["Title"] == (
            "Near duplicates across splits (perceptual-hash distance <= 4): 2 pairs, the 1 closest shown\n"
            "Exact duplicates (identical files), listed in prepare_report.json and not drawn: 3")
        assert sheet.text["Description"] == (
            "train: Red mullet (red.png)   |   test: Red mullet (green.png)\nhash distance 2")
    # The closer pair, both photos of it; the farther pair not at all.
    assert _pixels_of(tmp_path / "pairs.png", "red") > 3000
    assert _pixels_of(tmp_path / "pairs.png", "green") > 3000
    assert _pixels_of(tmp_path / "pairs.png", "blue") == 0


def test_the_sheet_says_when_there_are_no_near_duplicates(tmp_path):
    plot_near_duplicates(_leaks({"train-val": [], "train-test": [], "val-test": []}), {}, NAMES,
                         tmp_path / "none.png", limit=12, max_distance=4)
    with Image.open(tmp_path / "none.png") as sheet:
        assert sheet.size == (650, 200)
        assert sheet.text["Title"] == "Near duplicates across splits (perceptual-hash distance <= 4): 0 pairs"
        assert sheet.text["Description"] == "No near-duplicate pairs across splits"
