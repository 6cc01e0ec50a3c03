"""training/pixels.py: the manifest read into train and val paths and labels, and photos decoded as inference reads them."""

import json

import numpy as np
import pandas as pd
import pytest
from support.training_data import AUGMENTATION

from fish_classifier.data.manifest import DatasetError, label_indices
from fish_classifier.images import load_pixels, open_rgb
from fish_classifier.training.pixels import load_training_data, pixel_dataset


def test_label_indices_follow_classes_order_and_reject_unknown_labels():
    classes = [{"label": "b"}, {"label": "a"}]
    assert label_indices(["a", "b", "a"], classes).tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="labels not in classes.json: c"):
        label_indices(["a", "c"], classes)


def test_augmented_pixels_are_fixed_by_the_seed_and_the_image_index(colour_data):
    """Image i is changed with the generator seeded (*seed, i), whatever order parallel decoding finishes in."""
    augmentation = AUGMENTATION
    paths = colour_data.train_paths[:6]

    def pixels(seed):
        return np.stack(list(pixel_dataset(paths, None, 32, augmentation, seed).as_numpy_iterator()))

    view = pixels((7, 0))
    for i, path in enumerate(paths):
        expected = load_pixels(augmentation.apply(open_rgb(path), np.random.default_rng([7, 0, i])), 32)
        np.testing.assert_array_equal(view[i], expected)
    np.testing.assert_array_equal(pixels((7, 0)), view)
    assert np.abs(pixels((7, 1)) - view).max() > 10  # another view, other changes
    plain = np.stack(list(pixel_dataset(paths, None, 32).as_numpy_iterator()))
    assert np.abs(plain - view).max() > 10


def test_training_data_joins_augmented_rows_to_train(tmp_path):
    columns = ["path", "split", "label", "sha256", "width", "height", "augmented", "source"]
    manifest = pd.DataFrame(
        [["a.jpg", "train", "x", "1", 8, 8, False, ""], ["b.jpg", "val", "y", "2", 8, 8, False, ""],
         ["d.jpg", "val", "x", "5", 8, 8, False, ""], ["c.jpg", "test", "y", "3", 8, 8, False, ""]], columns=columns)
    augmented = pd.DataFrame([["aug/a0.png", "train", "y", "4", 8, 8, True, "a.jpg"]], columns=columns)
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    augmented.to_csv(tmp_path / "augmented.csv", index=False)
    (tmp_path / "classes.json").write_text(json.dumps({"classes": [{"label": "x"}, {"label": "y"}]}))
    data = load_training_data(tmp_path / "manifest.csv", tmp_path / "augmented.csv", tmp_path / "classes.json")
    assert data.train_paths == ["a.jpg", "aug/a0.png"]
    assert data.train_labels.tolist() == [0, 1]
    assert data.val_paths == ["b.jpg", "d.jpg"] and data.val_labels.tolist() == [1, 0]


def test_training_data_refuses_an_empty_val_split(tmp_path):
    columns = ["path", "split", "label", "sha256", "width", "height", "augmented", "source"]
    pd.DataFrame([["a.jpg", "train", "x", "1", 8, 8, False, ""], ["c.jpg", "test", "x", "3", 8, 8, False, ""]],
                 columns=columns).to_csv(tmp_path / "manifest.csv", index=False)
    (tmp_path / "classes.json").write_text(json.dumps({"classes": [{"label": "x"}]}))
    with pytest.raises(DatasetError) as refused:
        load_training_data(tmp_path / "manifest.csv", None, tmp_path / "classes.json")
    assert str(refused.value) == (
        f"{tmp_path / 'manifest.csv'}: val/ has no usable photo; validation chooses the model, its temperature and "
        "its thresholds, so every class needs photos there")
