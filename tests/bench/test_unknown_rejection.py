"""bench/unknown_rejection.py, tiny: its settings come through the stage schemas, and --methods refits each
detector method on a colour bundle's embeddings."""

import json

import pandas as pd
import pytest
from support.app_bundles import COLOUR_CLASSES, colour_photo, text_photo
from support.benches import load_bench

from fish_classifier.evaluation.bundle_detector import HELD_BACK, hold_back
from fish_classifier.params import PARAMS_FILE, load_params
from fish_classifier.serving.predictor import Predictor

unknown_rejection = load_bench("unknown_rejection")


def test_settings_are_the_select_and_data_sections_checked(tiny_project):
    select, limits, labels = unknown_rejection.settings()
    params = load_params(tiny_project / PARAMS_FILE)
    assert select.unknown_val_flag_rate == params["select"]["unknown_val_flag_rate"]
    assert select.batch_size == params["select"]["batch_size"]
    assert limits.max_unpacked_mb == params["data"]["max_unpacked_mb"]
    assert labels.catch_all_labels == params["data"]["catch_all_labels"]


def test_a_bad_setting_stops_the_bench_naming_the_key(tiny_project):
    text = (tiny_project / PARAMS_FILE).read_text().replace("unknown_val_flag_rate: 0.01", "unknown_val_flag_rate: 2")
    (tiny_project / PARAMS_FILE).write_text(text)
    with pytest.raises(SystemExit) as stopped:
        unknown_rejection.settings()
    assert "select.unknown_val_flag_rate must be a number within [0, 1], got 2" in str(stopped.value)


def test_every_method_is_refitted_on_the_bundles_embeddings(colour_bundle, tiny_project):
    rows = []
    for split, count in (("train", 8), ("val", 4), ("test", 2)):
        for k, entry in enumerate(COLOUR_CLASSES):
            for i in range(count):
                path = tiny_project / split / f"{k}-{i}.png"
                path.parent.mkdir(exist_ok=True)
                colour_photo(k, 32, seed=100 * len(rows) + i).save(path)
                rows.append({"path": str(path), "split": split, "label": entry["label"], "augmented": False})
    manifest = pd.DataFrame(rows)
    text = []
    for i in range(3):
        text_photo(f"no fish {i}").save(tiny_project / f"text{i}.png")
        text.append(str(tiny_project / f"text{i}.png"))
    sets = {"dev test fish": list(manifest[manifest["split"] == "test"]["path"]), "not-fish": text}
    select, _, _ = unknown_rejection.settings()

    table = unknown_rejection.compare_methods(Predictor(colour_bundle), manifest, sets, select)

    assert [(row["method"], row["power"], row["k"]) for row in table] == [
        ("knn", 1.0, 1), ("knn", 1.0, 5), ("knn", 0.5, 1), ("knn", 0.5, 5),
        ("mahalanobis", 1.0, 1), ("mahalanobis", 0.5, 1), ("mahalanobis", 0.35, 1), ("energy", 1.0, 1)]
    assert all(set(row["flagged"]) == {"dev test fish", "not-fish"} for row in table)
    assert all(0 <= row["auroc"] <= 1 for row in table)
    json.dumps(table)  # what --json writes

    # With a pipeline outlier pool (data/outliers) beside it, the relative detector is refitted too.
    pool = tiny_project / "data" / "outliers"
    pool.mkdir(parents=True)
    for i in range(4):
        text_photo(f"pool photo {i} {'x' * i}").save(pool / f"p{i}.png")
    paths = [f"data/outliers/p{i}.png" for i in range(4)]  # as the pipeline lists them, from the repo's root
    pd.DataFrame({"path": paths, "origin": "outlier_source", "sha256": ""}).to_csv(pool / "manifest.csv", index=False)
    with_pool = unknown_rejection.compare_methods(Predictor(colour_bundle), manifest, sets, select)
    assert [(row["method"], row["power"], row["k"]) for row in with_pool[-2:]] == [
        ("mahalanobis", 0.5, "relative"), ("mahalanobis", 0.35, "relative")]
    # select.unknown_held_back keeps p1 and p3 out of the fit, as select would: every method is scored on them.
    assert hold_back(paths, select.unknown_held_back)[1] == ["data/outliers/p1.png", "data/outliers/p3.png"]
    assert all(set(row["flagged"]) == {"dev test fish", "not-fish", HELD_BACK} for row in with_pool)
    assert [{**row, "flagged": {k: v for k, v in row["flagged"].items() if k != HELD_BACK}}
            for row in with_pool[:-2]] == table
