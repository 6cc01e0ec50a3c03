import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from support import REPO_ROOT as REPO
from support.app_bundles import text_photo
from PIL import Image
from support.fixtures_models import CLASSES, save_tiny_model, tinted_image, write_tinted_images

from fish_classifier.evaluation.field import BUNDLE, field_figures
from fish_classifier.evaluation.selection import (
    choose_threshold,
    flag_tradeoff,
    rank_models,
    score_histogram,
    summary,
    summary_markdown,
    unknown_figures,
)
from fish_classifier.layout import METRICS_FILE, MODEL_FILE, VAL_CONFIDENCE_FILE, metrics_dir, model_dir
from fish_classifier.serving.unknown import UnknownDetector


def _headline(f1, accuracy):
    return {"accuracy": accuracy, "macro_precision": f1, "macro_recall": f1, "macro_f1": f1}


def _scores(f1, accuracy, speed, ece=0.01, test=None):
    """A model's metrics file with validation scores `f1` and `accuracy`. The test scores default to the
    reverse of the validation ones, so a ranking that read them would come out upside down."""
    test_f1, test_accuracy = test or (1 - f1, 1 - accuracy)
    return {
        **_headline(test_f1, test_accuracy),
        "val": _headline(f1, accuracy),
        "test_clean": {**_headline(test_f1 - 0.01, test_accuracy - 0.01), "images": 90, "left_out": 10},
        "test_images": 100,
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


def test_the_choice_never_reads_the_test_scores():
    metrics = {"best_on_val": _scores(0.95, 0.95, 10, test=(0.70, 0.70)),
               "best_on_test": _scores(0.90, 0.90, 10, test=(0.99, 0.99))}
    assert rank_models(metrics, "macro_f1") == ["best_on_val", "best_on_test"]
    for scores in metrics.values():  # and it needs none of them
        for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "test_clean"):
            del scores[key]
    assert rank_models(metrics, "macro_f1") == ["best_on_val", "best_on_test"]


def test_metrics_without_validation_scores_are_refused_by_name():
    scores = _scores(0.9, 0.9, 1)
    del scores["val"]
    with pytest.raises(ValueError, match="metrics of model 'old' lack val.macro_f1, val.accuracy; run its evaluate"):
        rank_models({"old": scores}, "macro_f1")


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
    metrics = {"cnn": _scores(0.80, 0.85, 300, ece=0.02, test=(0.78, 0.84)),
               "mobilenetv2": _scores(0.97, 0.98, 90, ece=0.008, test=(0.96, 0.99))}
    text = summary_markdown(metrics, "macro_f1", None)
    table = text.splitlines()
    assert table[0] == ("| Model | Val macro F1 | Test accuracy | Test macro F1 | Clean test accuracy "
                        "| Clean test macro F1 | Field species right | ECE | img/s |")
    assert table[2] == "| **mobilenetv2** | 0.9700 | 0.9900 | 0.9600 | 0.9800 | 0.9500 | n/a | 0.0080 | 90.0 |"
    assert table[3] == "| cnn | 0.8000 | 0.8400 | 0.7800 | 0.8300 | 0.7700 | n/a | 0.0200 | 300.0 |"
    assert "`data.field_source` is empty" in text
    assert "Clean test: the 90 of them with no exact or near duplicate in train (10 left out" in text
    assert "`data.unknown_source` is empty), so the figures of the unknown-photo detector are skipped" in text
    assert summary(metrics, "macro_f1", 0.4, None)["ranking"] == ["mobilenetv2", "cnn"]


def test_field_figures_on_known_predictions():
    predictions = pd.DataFrame({
        "label": ["trout", "trout", "trout", "bass", "other", "other"],
        "predicted": ["trout", "other", "bass", "bass", "other", "trout"],
        "confidence": [0.95, 0.99, 0.40, 0.90, 0.97, 0.30],
    })
    figures = field_figures(predictions, threshold=0.5, other_fish_labels=["other"])
    # Species photos (trout, bass): 2 of 4 right. Flagged (< 0.5): the wrong bass guess and the other fish
    # taken for a trout. Confidently wrong: the trout taken for other fish, 1 of 6.
    assert figures["species_right"] == 0.5 and figures["flagged"] == pytest.approx(2 / 6)
    assert figures["confidently_wrong"] == pytest.approx(1 / 6) and figures["other_fish_ok"] == 1.0
    assert figures["per_class"]["trout"] == {"images": 3, "right": pytest.approx(1 / 3), "flagged": pytest.approx(1 / 3)}
    # The unknown-photo detector's verdicts flag on top of the low confidence.
    unknown = field_figures(predictions, 0.5, ["other"], unknown=[False, True, False, False, False, False])
    assert unknown["flagged"] == 0.5 and unknown["confidently_wrong"] == 0.0
    text = summary_markdown({"mobilenetv2": _scores(0.97, 0.98, 90)}, "macro_f1", None,
                            {"mobilenetv2": figures, BUNDLE: unknown})
    assert "| **mobilenetv2** | 6 | 50.0% | 33.3% | 16.7% | 100.0% |" in text
    assert "| deploy bundle | 6 | 50.0% | 50.0% | 0.0% | 100.0% |" in text


def test_unknown_figures_on_known_scores():
    detector = UnknownDetector("knn", {"train": np.eye(2, dtype=np.float32)}, threshold=0.5)
    scores = {"test fish": np.array([0.1, 0.2, 0.3, 0.6]), "not-fish": np.array([0.4, 0.7, 0.8, 0.9]),
              "fish-elsewhere": np.array([0.2, 0.55])}
    figures = unknown_figures(detector, 0.01, scores, fish_elsewhere_labels=["animal fish", "trout"],
                              catch_all_labels=["animal fish", "animal fish bass"])
    assert figures["flagged"] == {"test fish": 0.25, "not-fish": 0.75, "fish-elsewhere": 0.5}
    assert figures["images"] == {"test fish": 4, "not-fish": 4, "fish-elsewhere": 2}
    # 16 fish/not-fish pairs; the not-fish scores higher in all but (0.6, 0.4): AUROC 15/16.
    assert figures["auroc_test_fish_vs_not_fish"] == pytest.approx(15 / 16)
    assert figures["fish_elsewhere_catch_all"] == 0.5
    text = summary_markdown({"m": _scores(0.9, 0.9, 1)}, "macro_f1", figures)
    assert "| not-fish | 4 | 75.0% |" in text and "AUROC, test fish against not-fish: **0.9375**" in text
    assert "(animal fish, animal fish bass): 50.0%" in text


def test_flag_tradeoff_and_histogram_count_each_group_on_shared_thresholds():
    scores = {"test fish": np.array([0.1, 0.3]), "not-fish": np.array([0.2, 0.4, 0.6, 0.8])}
    tradeoff = flag_tradeoff(scores)
    assert tradeoff["threshold"].tolist() == [0.1, 0.2, 0.3, 0.4, 0.6, 0.8]
    assert tradeoff["test fish"].tolist() == [0.5, 0.5, 0.0, 0.0, 0.0, 0.0]
    assert tradeoff["not-fish"].tolist() == [1.0, 0.75, 0.75, 0.5, 0.25, 0.0]
    histogram = score_histogram(scores, bins=2)  # bins [0.1, 0.45) and [0.45, 0.8]
    assert histogram["test fish"].tolist() == [1.0, 0.0] and histogram["not-fish"].tolist() == [0.5, 0.5]


@pytest.mark.slow
def test_select_stage_bundles_the_winner_of_crafted_metrics_files(tmp_path):
    names = ["cnn", "vgg16", "mobilenetv2"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["models"] = names
    params["select"].update(metric="macro_f1", threshold_rule="val_flag_rate", val_flag_rate=0.1,
                            unknown_val_flag_rate=0.0, example_size=32)
    params["data"].update(catch_all_labels=[CLASSES[0]["label"]], other_fish_labels=[CLASSES[0]["label"]])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data" / "augmented").mkdir(parents=True)
    (tmp_path / "data" / "classes.json").write_text(json.dumps({"classes": CLASSES}))
    # Train photos fit the unknown-photo detector, validation photos set its threshold, and test photos
    # check the LiteRT export against the Keras model.
    rows = []
    for split, count in (("train", 12), ("val", 4), ("test", 2)):
        for path, k in write_tinted_images(tmp_path / "data" / "prepared" / split, per_class=count, seed=len(rows)):
            rows.append(f"{Path(path).relative_to(tmp_path).as_posix()},{split},{CLASSES[k]['label']},False")
    (tmp_path / "data" / "manifest.csv").write_text("path,split,label,augmented\n" + "\n".join(rows) + "\n")
    (tmp_path / "data" / "augmented" / "manifest.csv").write_text("path,split,label\n")
    # The unknown-photo set: black-and-white text is no tinted fish; a tinted photo from elsewhere is one.
    unknown = tmp_path / "data" / "unknown"
    unknown.mkdir()
    for i in range(3):
        text_photo(f"no fish {i}").save(unknown / f"text{i}.png")
    tinted_image(CLASSES[0]["label"], seed=99).save(unknown / "tinted.png")
    (unknown / "manifest.csv").write_text(
        "path,group\n" + "".join(f"data/unknown/text{i}.png,not-fish\n" for i in range(3))
        + "data/unknown/tinted.png,fish-elsewhere\n"
    )
    # By validation macro F1 cnn and mobilenetv2 tie, and so on accuracy; mobilenetv2 is faster. vgg16 has the
    # best validation accuracy but a worse F1. The test scores (the reverse) must play no part.
    crafted = {"cnn": _scores(0.9, 0.95, 50), "vgg16": _scores(0.85, 0.99, 900), "mobilenetv2": _scores(0.9, 0.95, 60)}
    for name, scores in crafted.items():
        (tmp_path / metrics_dir(name)).mkdir(parents=True)
        (tmp_path / metrics_dir(name) / METRICS_FILE).write_text(json.dumps(scores))
        save_tiny_model(tmp_path / model_dir(name) / MODEL_FILE)
        pd.DataFrame(columns=["path", "label", "predicted", "confidence"]).to_csv(
            tmp_path / metrics_dir(name) / "field_predictions.csv", index=False)
    val = pd.DataFrame({"confidence": np.arange(1, 21) / 20})  # 0.05 .. 1.00; 10% of 20 = 2 may be flagged
    val.to_csv(tmp_path / metrics_dir("mobilenetv2") / VAL_CONFIDENCE_FILE, index=False)
    # Two field photos of the winner: one named right and sure, one named wrong below its threshold (flagged).
    green, red = (next((tmp_path / "data" / "prepared" / "test").glob(f"{c['label']}/*.png"))
                  for c in (CLASSES[1], CLASSES[2]))
    pd.DataFrame({"path": [str(green), str(red)], "label": [CLASSES[1]["label"]] * 2,
                  "predicted": [CLASSES[1]["label"], CLASSES[2]["label"]], "confidence": [0.9, 0.1]}).to_csv(
        tmp_path / metrics_dir("mobilenetv2") / "field_predictions.csv", index=False)

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    run = subprocess.run([sys.executable, str(REPO / "stages" / "select_model.py")], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    result = json.loads((tmp_path / "metrics" / "summary.json").read_text())
    assert result["selected"] == "mobilenetv2"
    assert result["ranking"] == ["mobilenetv2", "cnn", "vgg16"]
    assert result["threshold"] == pytest.approx(0.15)  # flags 0.05 and 0.10 only
    assert sorted(result["field"]) == ["deploy bundle", "mobilenetv2"]  # the others have no field photos
    assert {key: result["field"]["mobilenetv2"][key] for key in ("images", "species_right", "flagged",
                                                                  "confidently_wrong")} == {
        "images": 2, "species_right": 0.5, "flagged": 0.5, "confidently_wrong": 0.0}
    assert result["field"]["deploy bundle"]["flagged"] >= 0.5  # the detector may flag more, never fewer
    summary_text = (tmp_path / "metrics" / "summary.md").read_text()
    assert "| **mobilenetv2** |" in summary_text and "| not-fish | 3 | 100.0% |" in summary_text

    deploy = tmp_path / "models" / "deploy"
    info = json.loads((deploy / "bundle.json").read_text())
    assert info["model"] == "mobilenetv2"
    assert info["input_size"] == 32
    assert info["temperature"] == 1.5
    assert info["threshold"] == pytest.approx(0.15)
    assert info["top_k"] == params["select"]["top_k"]  # what the app and the CLI show per photo
    assert info["metrics"]["val"]["macro_f1"] == 0.9
    assert info["data_hash"].startswith("sha256:") and info["created_at"]
    assert json.loads((deploy / "labels.json").read_text())["classes"] == CLASSES
    assert (deploy / "model.keras").read_bytes() == (tmp_path / model_dir("mobilenetv2") / MODEL_FILE).read_bytes()
    assert (deploy / "model.tflite").is_file()
    assert info["serving"]["parity"]["images"] == 6 and info["serving"]["parity"]["labels_agree"] == 6
    assert info["serving"]["parity"]["max_abs_diff"] <= 1e-4
    assert info["serving"]["parity"]["embedding_max_abs_diff"] <= 1e-4
    # The detector: in the bundle and hashed there; its threshold passes every validation photo (rate 0).
    assert set(info["files"]) == {"model.keras", "labels.json", "model.tflite", "unknown.npz",
                                  "examples/0.jpg", "examples/1.jpg", "examples/2.jpg"}
    # Built aside and moved into place whole, promising the parts a killed build would lack.
    assert info["format_version"] == 1 and info["required"] == ["labels.json", "model.tflite", "unknown.npz"]
    assert sorted(p.name for p in deploy.parent.iterdir() if p.name.startswith(".")) == []
    assert info["unknown"]["method"] == params["select"]["unknown_method"]
    figures = info["unknown"]["figures"]
    assert figures["flagged"]["not-fish"] == 1.0 and figures["flagged"]["fish-elsewhere"] == 0.0
    assert figures["fish_elsewhere_catch_all"] == 1.0
    assert result["unknown"]["auroc_test_fish_vs_not_fish"] == 1.0
    for plot in ("scores.csv", "scores.png", "tradeoff.csv", "tradeoff.png"):
        assert (tmp_path / "metrics" / "unknown" / plot).stat().st_size > 0
    assert_examples_are_first_test_photos(tmp_path, info["examples"], size=32)


def assert_examples_are_first_test_photos(root: Path, examples: list[dict], size: int) -> None:
    """One small thumbnail per class, in class order, and of each class's photos it is the first test one's."""
    assert [(e["label"], e["display"]) for e in examples] == [(c["label"], c["display"]) for c in CLASSES]
    for example in examples:
        with Image.open(root / "models" / "deploy" / example["file"]) as thumbnail:
            assert (thumbnail.format, thumbnail.size) == ("JPEG", (size, size))  # the 48 px photos, shrunk
            pixels = np.asarray(thumbnail, dtype=np.float64)
        photos = sorted((root / "data" / "prepared").glob(f"*/{example['label']}/*.png"))
        distance = {photo.relative_to(root).as_posix(): np.abs(pixels - shrunk(photo, size)).mean() for photo in photos}
        assert min(distance, key=distance.get) == f"data/prepared/test/{example['label']}/000.png"
        assert (root / "models" / "deploy" / example["file"]).stat().st_size < 5_000


def shrunk(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as photo:
        photo = photo.convert("RGB")
        photo.thumbnail((size, size))
        return np.asarray(photo, dtype=np.float64)
