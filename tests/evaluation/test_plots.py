from pathlib import Path

import numpy as np
from PIL import Image

from fish_classifier.evaluation.plots import plot_misclassified

FLAT = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200)}


def _flat_photo(folder: Path, colour: str, size=(48, 32)) -> str:
    path = folder / f"{colour}.png"
    Image.new("RGB", size, FLAT[colour]).save(path)
    return str(path)


def _pixels_of(png: Path, colour: str) -> int:
    """How many pixels of the PNG are (within 3 levels) the flat colour."""
    with Image.open(png) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=int)
    return int((np.abs(pixels - FLAT[colour]).max(axis=2) <= 3).sum())


def test_misclassified_gallery_shows_the_most_confident_mistakes_first(tmp_path):
    names = ["Mullet", "Bass", "Trout"]
    paths = [_flat_photo(tmp_path, colour) for colour in ("blue", "red", "green")]
    y_true = [0, 0, 2]
    # blue: right; red: a Mullet taken for a Trout, 95% sure; green: a Trout taken for a Bass, 50% sure.
    probabilities = np.array([[0.9, 0.05, 0.05], [0.03, 0.02, 0.95], [0.1, 0.5, 0.4]])
    red_caption = "true: Mullet\npredicted: Trout\nconfidence 95.0%"
    green_caption = "true: Trout\npredicted: Bass\nconfidence 50.0%"

    plot_misclassified(paths, y_true, probabilities, names, tmp_path / "both.png", "cnn", limit=24)
    plot_misclassified(paths, y_true, probabilities, names, tmp_path / "one.png", "cnn", limit=1)

    with Image.open(tmp_path / "both.png") as both:
        assert both.size == (650, 360)  # two photos in one row, at the sheet's narrowest width
        assert both.text["Title"] == "cnn: 2 of 3 photos misclassified, most confident first"
        assert both.text["Description"] == f"{red_caption}\n\n{green_caption}"
    with Image.open(tmp_path / "one.png") as one:
        assert one.size == (650, 360)
        assert one.text["Title"] == "cnn: 2 of 3 photos misclassified, the 1 most confident shown"
        assert one.text["Description"] == red_caption
    assert _pixels_of(tmp_path / "one.png", "red") > 5000
    assert _pixels_of(tmp_path / "one.png", "green") == 0
    assert _pixels_of(tmp_path / "both.png", "green") > 5000
    assert _pixels_of(tmp_path / "both.png", "blue") == 0  # the right answer is never drawn


def test_misclassified_gallery_without_mistakes_says_so(tmp_path):
    paths = [_flat_photo(tmp_path, "blue")]
    plot_misclassified(paths, [0], np.array([[0.9, 0.1]]), ["Mullet", "Bass"], tmp_path / "none.png", "cnn", limit=24)
    with Image.open(tmp_path / "none.png") as none:
        assert none.size == (650, 200)
        assert none.text["Title"] == "cnn: 0 of 1 photos misclassified"
        assert none.text["Description"] == "No misclassified photos"
    assert _pixels_of(tmp_path / "none.png", "blue") == 0
