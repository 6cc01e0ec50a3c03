"""The select stage end to end on crafted metrics files and a tiny model: the bundle, the summary and the
unknown-photo figures, and the outlier pool that fits the detector but never counts in them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from support import REPO_ROOT as REPO
from support.app_bundles import text_photo
from support.fixtures_models import CLASSES, save_tiny_model, tinted_image, write_tinted_images
from support.model_metrics import model_scores

from fish_classifier.evaluation.bundle_detector import hold_back
from fish_classifier.layout import METRICS_FILE, MODEL_FILE, VAL_CONFIDENCE_FILE, metrics_dir, model_dir


def select_project(tmp_path, names=("cnn", "vgg16", "mobilenetv2"), **select) -> dict:
    """A folder with everything the select stage reads: params.yaml (its `select` changed by `select`), tinted
    photos in train, val and test, an unknown-photo set, and each model of `names` trained and evaluated (crafted
    metrics). Returns the params."""
    names = list(names)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["models"] = names
    for name in names:  # the tiny model stands in for each: none of them starts from ImageNet's weights
        params["train"][name].update({"weights": "none"} if name != "cnn" else {})
    params["select"].update(metric="macro_f1", threshold_rule="val_flag_rate", val_flag_rate=0.1,
                            unknown_val_flag_rate=0.0, example_size=32, **select)
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
    crafted = {"cnn": model_scores(0.9, 0.95, 50), "vgg16": model_scores(0.85, 0.99, 900),
               "mobilenetv2": model_scores(0.9, 0.95, 60)}
    for name in names:
        scores = crafted[name]
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
    return params


def run_select(tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, str(REPO / "stages" / "select_model.py")], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_select_stage_bundles_the_winner_of_crafted_metrics_files(tmp_path):
    params = select_project(tmp_path)
    run = run_select(tmp_path)
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
    # Its model did not start from ImageNet's weights: no ImageNet branch, whatever select.unknown_imagenet_weight.
    assert "No ImageNet branch" in summary_text and result["detector"]["imagenet_weight"] == 0.0
    serving = json.loads((tmp_path / "models" / "deploy" / "bundle.json").read_text())["serving"]
    assert "imagenet" not in serving["outputs"]
    # Nor any catch-all doubt: nothing can back or doubt a catch-all answer.
    assert result["detector"]["catch_all_doubt"] is None and "Catch-all answers" not in summary_text
    assert "catch_all_doubt" not in json.loads((tmp_path / "models" / "deploy" / "bundle.json").read_text())

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
    assert info["format_version"] == 2 and info["required"] == ["labels.json", "model.tflite", "unknown.npz"]
    assert sorted(p.name for p in deploy.parent.iterdir() if p.name.startswith(".")) == []
    assert info["unknown"]["method"] == params["select"]["unknown_method"]
    figures = info["unknown"]["figures"]
    assert figures["flagged"]["not-fish"] == 1.0 and figures["flagged"]["fish-elsewhere"] == 0.0
    assert figures["fish_elsewhere_catch_all"] == 1.0
    assert result["unknown"]["auroc_test_fish_vs_not_fish"] == 1.0
    for plot in ("scores.csv", "scores.png", "tradeoff.csv", "tradeoff.png"):
        assert (tmp_path / "metrics" / "unknown" / plot).stat().st_size > 0
    assert_examples_are_first_test_photos(tmp_path, info["examples"], size=32)


@pytest.mark.slow
def test_the_outlier_pool_fits_the_detector_but_never_counts_in_its_figures(tmp_path):
    select_project(tmp_path, names=["mobilenetv2"], unknown_outliers="relative", unknown_method="mahalanobis")
    pool = tmp_path / "data" / "outliers"
    pool.mkdir()
    (pool / "manifest.csv").write_text("path,origin,sha256\n")
    refused = run_select(tmp_path)
    assert refused.returncode == 1 and not (tmp_path / "models" / "deploy").exists()
    assert refused.stderr.strip().splitlines()[-1] == (
        "select.unknown_outliers is relative but the outlier pool (data/outliers) holds no photo: point "
        "data.outlier_source at photos that are no fish, or set select.unknown_outliers to ignore")

    # Eight photos that are no fish (text, as the measured not-fish are, but other words) make the pool.
    rows = []
    for i in range(8):
        text_photo(f"pool {i} {'x' * i}").save(pool / f"p{i}.png")
        rows.append(f"data/outliers/p{i}.png,outlier_source,{i:064x}")
    (pool / "manifest.csv").write_text("path,origin,sha256\n" + "\n".join(rows) + "\n")
    run = run_select(tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]

    # select.unknown_held_back (0.2) keeps p1, p3 and p5 out of the fit, by their paths: they only choose.
    fit, held = hold_back([f"data/outliers/p{i}.png" for i in range(8)], 0.2)
    assert (len(fit), len(held)) == (5, 3)
    unknown = json.loads((tmp_path / "metrics" / "summary.json").read_text())["unknown"]
    assert unknown["method"] == "relative_mahalanobis" and unknown["outlier_photos"] == 5
    # Only data/unknown's photos (and the test fish) are measured: 3 not-fish and 1 fish from elsewhere.
    assert unknown["images"] == {"test fish": 6, "not-fish": 3, "fish-elsewhere": 1, "small test fish": 6}
    assert all(share * 3 == round(share * 3) for share in [unknown["flagged"]["not-fish"]])
    histogram = pd.read_csv(tmp_path / "metrics" / "unknown" / "scores.csv")
    assert histogram["not-fish"].sum() == pytest.approx(1.0)  # shares of the 3 measured photos, nothing else
    info = json.loads((tmp_path / "models" / "deploy" / "bundle.json").read_text())["unknown"]
    assert (info["method"], info["outliers"], info["outlier_photos"]) == ("relative_mahalanobis", "relative", 5)
    assert (info["small_px"], info["held_back_photos"]) == (64, 3)  # the bundle says what its detector was fitted on
    text = (tmp_path / "metrics" / "summary.md").read_text()
    assert ("Fitted on the train fish (as they are and brought down to 64 px, so that a small photo is not taken for "
            "no fish) and on 5 photos that are no fish (data/outliers: ") in text
    detector = json.loads((tmp_path / "metrics" / "summary.json").read_text())["detector"]
    flagged = detector.pop("held_back_flagged")
    assert detector == {"method": "relative_mahalanobis", "outliers": "relative", "asked": "relative",
                        "outlier_photos": 5, "small_px": 64, "held_back_photos": 3, "imagenet_weight": 0.0,
                        "catch_all_doubt": None}  # no ImageNet branch, so no catch-all doubt
    assert flagged * 3 == round(flagged * 3) and f"it flags {flagged:.1%} of them" in text


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


def fake_imagenet_home(folder):
    """A KERAS_HOME whose MobileNetV2 weights with the 1000-class head are random ones, under the file name Keras
    looks for: this machine's stand-in for ImageNet's. Returns (the folder, the model those weights make)."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(0)
    imagenet = keras.applications.MobileNetV2(include_top=True, weights=None)
    (folder / "models").mkdir(parents=True)
    with h5py.File(folder / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, imagenet)
    return folder, imagenet


@pytest.mark.slow
def test_a_mobilenetv2_from_imagenet_weights_ships_its_imagenet_branch_and_the_detector_hears_it(tmp_path):
    import keras

    from fish_classifier.model.zoo import build_head, build_model
    from fish_classifier.serving.predictor import Predictor

    # knn: random weights give embeddings too alike for a Mahalanobis covariance to invert.
    params = select_project(tmp_path, names=["mobilenetv2"], unknown_method="knn", unknown_outliers="ignore")
    params["train"]["mobilenetv2"]["weights"] = "imagenet"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    home, imagenet = fake_imagenet_home(tmp_path / "keras-home")
    # The deploy model: the backbone from those weights, its top block moved as fine-tuning moves it.
    backbone = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(224, 224, 3))
    for layer in backbone.layers:
        if layer.weights:
            layer.set_weights([w + 0.01 * (layer.name.startswith("block_16")) for w in
                               imagenet.get_layer(layer.name).get_weights()])
    build_model("mobilenetv2", len(CLASSES), backbone=backbone, head=build_head(len(CLASSES), 0.1)).save(
        tmp_path / model_dir("mobilenetv2") / MODEL_FILE)

    run = subprocess.run([sys.executable, str(REPO / "stages" / "select_model.py")], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_HOME": str(home)})
    assert run.returncode == 0, run.stderr[-3000:]

    assert "exported model.tflite (with ImageNet branch)" in run.stdout
    bundle = json.loads((tmp_path / "models" / "deploy" / "bundle.json").read_text())
    assert bundle["serving"]["outputs"][-1] == "imagenet"
    assert bundle["serving"]["parity"]["imagenet_max_abs_diff"] < 1e-4
    assert bundle["unknown"]["imagenet_weight"] == 0.5
    assert json.loads((tmp_path / "metrics" / "summary.json").read_text())["detector"]["imagenet_weight"] == 0.5
    assert "The score adds, at weight 0.5, the ImageNet head's" in (tmp_path / "metrics" / "summary.md").read_text()
    predictor = Predictor(tmp_path / "models" / "deploy", num_threads=1)
    assert predictor.detector.needs_imagenet and predictor.predict(tinted_image(CLASSES[1]["label"], seed=1))[0].label
    # The catch-all doubt, set on the validation photos answered with data.other_fish_labels, ships and serves.
    doubt = json.loads((tmp_path / "metrics" / "summary.json").read_text())["detector"]["catch_all_doubt"]
    assert bundle["catch_all_doubt"]["labels"] == doubt["labels"] == [CLASSES[0]["label"]]
    assert bundle["catch_all_doubt"]["threshold"] == doubt["threshold"] and doubt["rate"] == 0.25
    assert predictor.doubt.threshold == doubt["threshold"] and "Catch-all answers (" in (
        tmp_path / "metrics" / "summary.md").read_text()
