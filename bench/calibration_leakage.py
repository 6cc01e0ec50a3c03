"""Does train-val leakage spoil the temperature? Calibrate on all validation photos, then on those with no
exact or near duplicate in train, and compare the test split's ECE.

Validation photos that nearly copy a train photo are easier than test photos, so a temperature fitted
on them could sharpen too much. This refits the `evaluate` stage's temperature both ways on the
trained model and prints, for each: validation photos used, their errors, the temperature, and the
test split's ECE and NLL. Reads the pipeline's outputs; run it after `dvc repro` (from the repo root):

    python bench/calibration_leakage.py [--model mobilenetv2]
"""

import argparse
import json
import sys

import numpy as np

from fish_classifier.data.leakage import duplicated_from_train
from fish_classifier.data.manifest import read_classes, read_manifest
from fish_classifier.evaluation.metrics import EvaluateSettings, calibration_report
from fish_classifier.evaluation.predictions import predict_split
from fish_classifier.layout import CLASSES, MANIFEST, MODEL_FILE, PREPARE_REPORT, model_dir
from fish_classifier.model.preprocessing import load_model
from fish_classifier.params import stage_params
from fish_classifier.serving.inference import KerasBackend


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenetv2")
    args = parser.parse_args(argv)
    model_path = model_dir(args.model) / MODEL_FILE
    if not model_path.is_file():
        sys.exit(f"{model_path} is missing: run `dvc repro` first")
    params = stage_params(evaluate=EvaluateSettings).evaluate  # the evaluate stage's own settings, checked
    bins, prior_sigma = params.ece_bins, params.temperature_prior_sigma
    classes = read_classes(CLASSES)
    manifest = read_manifest(MANIFEST)
    backend = KerasBackend(load_model(model_path))
    val, test = (predict_split(backend, manifest, split, classes, batch_size=params.batch_size, desc=split)
                 for split in ("val", "test"))
    y_val, y_test = val.y_true, test.y_true
    val_probs, test_probs = val.probabilities, test.probabilities
    report = json.loads(PREPARE_REPORT.read_text(encoding="utf-8"))
    clean = ~val.rows["path"].isin(duplicated_from_train(report, "val")).to_numpy()

    print(f"{args.model}: test accuracy {(test_probs.argmax(axis=1) == y_test).mean():.4f} on {len(y_test)} photos")
    print(f"{'calibrated on':<28}{'photos':>7}{'errors':>7}{'T':>8}{'test ECE':>10}{'test NLL':>10}{'ECE at T=1':>12}")
    for name, rows in (("all validation", np.ones(len(y_val), bool)), ("validation without leaks", clean)):
        fit = calibration_report(val_probs[rows], y_val[rows], test_probs, y_test, bins, prior_sigma)
        print(f"{name:<28}{rows.sum():>7}{fit['val_errors']:>7}{fit['temperature']:>8.3f}{fit['ece_after']:>10.4f}"
              f"{fit['nll_after']:>10.4f}{fit['ece_before']:>12.4f}")


if __name__ == "__main__":
    main()
