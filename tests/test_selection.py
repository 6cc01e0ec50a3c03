import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fixtures_models import CLASSES, save_tiny_model, write_tinted_images

from fish_classifier.selection import choose_threshold, rank_models, summary, summary_markdown

REPO = Path(__file__).resolve().parents[1]


def _scores(f1, accuracy, speed, ece=0.01):
    return {
        "accuracy": accuracy,
        "macro_precision": f1,
        "macro_recall": f1,
        "macro_f1": f1,
        "images_per_second": speed,
        "model_size_mb": 10.0,
        "calibration": {"temperature": 1.5, "ece_before": 0.05, "ece_after": ece},
    }


def test_ranks_by_the_chosen_metric_first():
    metrics = {"slow_good": _scores(0.95, 0.90, 10), "fast_worse": _scores(0.80, 0.99, 500)}
    assert rank_models(metrics, "macro_f1") == ["slow_good", "fast_worse"]
    assert rank_models(metrics, "accuracy") == ["fast_worse", "slow_good"]


def test_a_tie_on_the_metric_goes_to_the_more_accurate_model():
    metrics = {"a": _scores(0.9, 0.91, 500), "b": _scores(0.9, 0.93, 10)}
    assert rank_models(metrics, "macro_f1") == ["b", "a"]


def test_a_tie_on_metric_and_accuracy_goes_to_the_faster_model():
    metrics = {"slow": _scores(0.9, 0.93, 10), "fast": _scores(0.9, 0.93, 80), "worse": _scores(0.5, 0.99, 999)}
    assert rank_models(metrics, "macro_f1") == ["fast", "slow", "worse"]


def test_an_unknown_metric_names_the_allowed_ones():
    allowed = "accuracy, macro_precision, macro_recall, macro_f1"
    with pytest.raises(ValueError, match=f"unknown select.metric 'f1', expected one of: {allowed}"):
        rank_models({"a": _scores(0.9, 0.9, 1)}, "f1")


def test_threshold_is_the_highest_that_flags_at_most_the_allowed_share():
    confidences = np.arange(1, 101) / 100  # 0.01 .. 1.00
    # 1% of 100 may be flagged: a threshold of 0.02 flags only 0.01; anything above 0.02 also flags 0.02.
    assert choose_threshold(confidences, rule="val_flag_rate", val_flag_rate=0.01, fixed_threshold=0.5) == 0.02
    assert choose_threshold(confidences, rule="val_flag_rate", val_flag_rate=0.05, fixed_threshold=0.5) == 0.06
    assert choose_threshold(confidences, rule="val_flag_rate", val_flag_rate=0.0, fixed_threshold=0.5) == 0.01


@pytest.mark.parametrize("seed", range(5))
def test_threshold_rule_holds_on_random_confidences_with_ties(seed):
    rng = np.random.default_rng(seed)
    confidences = rng.choice([0.3, 0.5, 0.5, 0.7, 0.9, 0.99], size=37)
    threshold = choose_threshold(confidences, rule="val_flag_rate", val_flag_rate=0.1, fixed_threshold=0.5)
    assert np.mean(confidences < threshold) <= 0.1
    # Any higher threshold also flags the images at exactly this confidence: too many.
    assert np.mean(confidences <= threshold) > 0.1


def test_fixed_rule_and_bad_rules():
    assert choose_threshold([0.9], rule="fixed", val_flag_rate=0.01, fixed_threshold=0.4) == 0.4
    assert choose_threshold([0.9, 0.8], rule="val_flag_rate", val_flag_rate=1.0, fixed_threshold=0.4) == 1.0
    with pytest.raises(ValueError, match="unknown select.threshold_rule 'top'.*val_flag_rate, fixed"):
        choose_threshold([0.9], rule="top", val_flag_rate=0.01, fixed_threshold=0.4)
    with pytest.raises(ValueError, match="val_flag_rate must be within"):
        choose_threshold([0.9], rule="val_flag_rate", val_flag_rate=1.5, fixed_threshold=0.4)


def test_summary_table_lists_every_model_best_first_with_the_winner_in_bold():
    metrics = {"cnn": _scores(0.80, 0.85, 300, ece=0.02), "mobilenetv2": _scores(0.97, 0.98, 90, ece=0.008)}
    table = summary_markdown(metrics, "macro_f1").splitlines()
    assert table[0] == "| Model | Accuracy | Macro Precision | Macro Recall | Macro F1 | ECE | img/s |"
    assert table[2] == "| **mobilenetv2** | 0.9800 | 0.9700 | 0.9700 | 0.9700 | 0.0080 | 90.0 |"
    assert table[3] == "| cnn | 0.8500 | 0.8000 | 0.8000 | 0.8000 | 0.0200 | 300.0 |"
    assert summary(metrics, "macro_f1", 0.4)["ranking"] == ["mobilenetv2", "cnn"]


@pytest.mark.slow
def test_select_stage_bundles_the_winner_of_crafted_metrics_files(tmp_path):
    names = ["cnn", "vgg16", "mobilenetv2"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["models"] = names
    params["select"].update(metric="macro_f1", threshold_rule="val_flag_rate", val_flag_rate=0.1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data" / "augmented").mkdir(parents=True)
    (tmp_path / "data" / "classes.json").write_text(json.dumps({"classes": CLASSES}))
    # Test images for the check of the LiteRT export against the Keras model.
    tests = write_tinted_images(tmp_path / "data" / "prepared" / "test", per_class=2)
    rows = [f"{Path(path).relative_to(tmp_path).as_posix()},test,{CLASSES[k]['label']}" for path, k in tests]
    (tmp_path / "data" / "manifest.csv").write_text("path,split,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "data" / "augmented" / "manifest.csv").write_text("path,split,label\n")
    # cnn and mobilenetv2 tie on macro F1 and accuracy; mobilenetv2 is faster. vgg16 is more accurate but worse on F1.
    crafted = {"cnn": _scores(0.9, 0.95, 50), "vgg16": _scores(0.85, 0.99, 900), "mobilenetv2": _scores(0.9, 0.95, 60)}
    for name, scores in crafted.items():
        (tmp_path / "metrics" / name).mkdir(parents=True)
        (tmp_path / "metrics" / f"{name}.json").write_text(json.dumps(scores))
        save_tiny_model(tmp_path / "models" / name / "model.keras")
    val = pd.DataFrame({"confidence": np.arange(1, 21) / 20})  # 0.05 .. 1.00; 10% of 20 = 2 may be flagged
    val.to_csv(tmp_path / "metrics" / "mobilenetv2" / "val_confidence.csv", index=False)

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run([sys.executable, str(REPO / "stages" / "select_model.py")], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    result = json.loads((tmp_path / "metrics" / "summary.json").read_text())
    assert result["selected"] == "mobilenetv2"
    assert result["ranking"] == ["mobilenetv2", "cnn", "vgg16"]
    assert result["threshold"] == pytest.approx(0.15)  # flags 0.05 and 0.10 only
    assert "| **mobilenetv2** |" in (tmp_path / "metrics" / "summary.md").read_text()

    deploy = tmp_path / "models" / "deploy"
    info = json.loads((deploy / "bundle.json").read_text())
    assert info["model"] == "mobilenetv2"
    assert info["input_size"] == 32
    assert info["temperature"] == 1.5
    assert info["threshold"] == pytest.approx(0.15)
    assert info["metrics"]["macro_f1"] == 0.9
    assert info["data_hash"].startswith("sha256:") and info["created_at"]
    assert json.loads((deploy / "labels.json").read_text())["classes"] == CLASSES
    assert (deploy / "model.keras").read_bytes() == (tmp_path / "models" / "mobilenetv2" / "model.keras").read_bytes()
    assert (deploy / "model.tflite").is_file()
    assert info["serving"]["parity"]["images"] == 6 and info["serving"]["parity"]["labels_agree"] == 6
    assert info["serving"]["parity"]["max_abs_diff"] <= 1e-4
