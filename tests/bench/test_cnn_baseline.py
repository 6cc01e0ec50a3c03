"""bench/cnn_baseline.py, tiny: the reference recipe is a valid `train.cnn`, and one recipe trains and scores."""

import pytest
from support.benches import load_bench

from fish_classifier.params import check_params
from fish_classifier.training.settings import CnnSettings

cnn_baseline = load_bench("cnn_baseline")


def test_the_reference_recipe_is_a_cnn_section_params_accepts():
    reference = check_params(CnnSettings, cnn_baseline.REFERENCE, "reference")
    assert reference.image_size == 224 and reference.filters == [32, 64, 128] and reference.augment


def test_the_project_recipe_trains_as_train_cnn_and_scores_as_evaluate(tiny_project):
    row = cnn_baseline.train_and_score("project", seed=0, epochs=1)
    assert set(row) == set(cnn_baseline.COLUMNS)
    assert row["epochs"] == 1  # the cap, under the tiny params' 2
    assert 0 <= row["accuracy"] <= 1 and 0 <= row["macro_f1"] <= 1 and 0 <= row["val_accuracy"] <= 1
    assert row["train_s"] > 0 and row["peak_mib"] > 0


def test_without_prepared_data_it_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        cnn_baseline.main(["--seeds", "1"])
    assert str(stopped.value).startswith("data/manifest.csv is missing: prepare the dev data first")
