"""bench/seed_spread.py, tiny: one seed of the CNN trained as `train@cnn` and scored as `evaluate@cnn`."""

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from support.benches import load_bench

from fish_classifier.layout import FIELD_MANIFEST, MANIFEST
from fish_classifier.serving import inference

seed_spread = load_bench("seed_spread")


def test_one_seed_is_trained_and_scored(tiny_project):
    row = seed_spread.train_and_score("cnn", seed=0)
    assert set(row) == set(seed_spread.COLUMNS)
    assert 0 <= row["accuracy"] <= 1 and 0 <= row["macro_f1"] <= 1
    assert row["test_errors"] == round((1 - row["accuracy"]) * 12)  # 4 test photos of each of 3 colours
    assert row["temperature"] > 0 and 0 <= row["ece_after"] <= 1
    assert math.isnan(row["field_species_right"]) and math.isnan(row["field_closest_right"])  # no field photos


def test_with_field_photos_it_gives_the_share_of_named_species_photos_named_right(tiny_project, monkeypatch):
    """Three field photos: red and green are named species, blue stands for the catch-all (`other_fish_labels`). A
    model that answers red for every photo names one of the two species photos right: 0.5, blue left out. One that
    answers blue, then green, then red names none right, and its closest species (green) one of the two."""
    red, green, blue = "zebra red", "alpha green", "mid blue"
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["data"]["other_fish_labels"] = [blue]
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(params))
    test = pd.read_csv(MANIFEST).query("split == 'test'")
    field = pd.concat([test[test["label"] == label].head(1) for label in (red, green, blue)])
    FIELD_MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    field[["path", "label"]].assign(origin="field_source").to_csv(FIELD_MANIFEST, index=False)
    order = sorted([red, green, blue])  # the classes' order

    def always_red(backend, paths, **kwargs):
        probs = np.zeros((len(paths), 3))
        probs[:, order.index(red)] = 1.0
        return probs, 0.0

    monkeypatch.setattr(inference, "probabilities_for_files", always_red)
    row = seed_spread.train_and_score("cnn", seed=0)
    assert row["field_species_right"] == 0.5 and row["field_closest_right"] == 0.5

    def catch_all_then_green(backend, paths, **kwargs):
        probs = np.zeros((len(paths), 3))
        probs[:, [order.index(blue), order.index(green), order.index(red)]] = [0.6, 0.3, 0.1]
        return probs, 0.0

    monkeypatch.setattr(inference, "probabilities_for_files", catch_all_then_green)
    row = seed_spread.train_and_score("cnn", seed=0)
    assert row["field_species_right"] == 0.0 and row["field_closest_right"] == 0.5


def test_an_unknown_model_is_refused_with_the_choices(tiny_project):
    with pytest.raises(ValueError, match="unknown model 'resnet', expected one of: cnn, vgg16"):
        seed_spread.train_and_score("resnet", seed=0)


def test_without_prepared_data_it_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        seed_spread.main(["--seeds", "1"])
    assert str(stopped.value).startswith("data/manifest.csv is missing: prepare the dev data first")


def test_the_model_trains_on_its_composite_set_as_train_does(tiny_project, monkeypatch):
    from fish_classifier.data.manifest import read_manifest
    from fish_classifier.layout import MANIFEST, composite_set
    from fish_classifier.training import trainer

    train = read_manifest(tiny_project / MANIFEST).query("split == 'train'")
    composite_set("cnn").parent.mkdir(parents=True, exist_ok=True)
    train.head(2).assign(augmented=True).to_csv(composite_set("cnn"), index=False)  # two rows, listed again
    seen = {}

    def stop(name, data, *args, **kwargs):
        seen["train_paths"] = data.train_paths
        raise RuntimeError("trained enough")

    monkeypatch.setattr(trainer, "train_model", stop)
    with pytest.raises(RuntimeError, match="trained enough"):
        seed_spread.train_and_score("cnn", seed=0)
    assert len(seen["train_paths"]) == len(train) + 2
