"""bench/calibration_leakage.py, tiny: the model comes from the zoo's folder, the settings through the evaluate
stage's schema, and the two calibrations are printed."""

import json
import re
import shutil

import pandas as pd
import pytest
from support.app_bundles import COLOUR_CLASSES, colour_photo
from support.benches import load_bench

from fish_classifier.layout import CLASSES, MANIFEST, MODEL_FILE, PREPARE_REPORT, model_dir

calibration_leakage = load_bench("calibration_leakage")


def test_a_missing_model_is_named_where_the_pipeline_puts_it(tiny_project):
    with pytest.raises(SystemExit) as stopped:
        calibration_leakage.main(["--model", "mobilenetv2"])
    assert str(stopped.value) == "models/zoo/mobilenetv2/model.keras is missing: run `dvc repro` first"


def test_all_validation_and_validation_without_leaks_are_both_calibrated(colour_bundle, tiny_project, capsys):
    (tiny_project / model_dir("cnn")).mkdir(parents=True)
    shutil.copy(colour_bundle / MODEL_FILE, tiny_project / model_dir("cnn") / MODEL_FILE)
    rows = []
    for split in ("val", "test"):
        for k, entry in enumerate(COLOUR_CLASSES):
            for i in range(4):
                path = tiny_project / split / f"{k}-{i}.png"
                path.parent.mkdir(exist_ok=True)
                colour_photo(k, 32, seed=50 * k + i + (500 if split == "test" else 0)).save(path)
                rows.append({"path": str(path), "split": split, "label": entry["label"], "augmented": False})
    pd.DataFrame(rows).to_csv(tiny_project / MANIFEST, index=False)
    (tiny_project / CLASSES).write_text(json.dumps({"classes": COLOUR_CLASSES}))
    leaked = [{"train": "x.png", "val": rows[0]["path"]}]
    (tiny_project / PREPARE_REPORT).write_text(json.dumps(
        {"exact_duplicate_pairs": {"train-val": leaked}, "near_duplicate_pairs": {"train-val": []}}))

    calibration_leakage.main(["--model", "cnn"])

    out = capsys.readouterr().out
    assert out.startswith("cnn: test accuracy ") and "on 12 photos" in out
    photos = dict(re.findall(r"^(all validation|validation without leaks)\s+(\d+)", out, flags=re.MULTILINE))
    assert photos == {"all validation": "12", "validation without leaks": "11"}
