"""Stage `evaluate@<model>`: score one trained model on the validation and test splits, and calibrate it.

Reads models/zoo/<model>/model.keras, data/manifest.csv, data/classes.json, data/prepared,
data/prepare_report.json and data/field (the field photos, maybe none); writes, in metrics/models/<model>/,
metrics.json (the headline scores), per_class.csv (each class's scores), the predictions, validation
confidences, confusion matrix and reliability diagram (CSV and PNG), misclassified.png (a gallery of the
test photos it got wrong), and field_predictions.csv and field_mistakes.png (the field photos).

The validation scores are what `select` chooses by; the test scores are reported, on the whole split and
on its clean subset (the test photos with no exact or near duplicate in train, by prepare's report), and on
the field photos (params `data.field_source`: the species photographed outside the studio), which choose nothing.

Usage: python stages/evaluate.py <model>
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fish_classifier.data.leakage import duplicated_from_train
from fish_classifier.data.manifest import CatchAllLabels, label_indices, read_classes, read_manifest
from fish_classifier.evaluation.metrics import (
    EvaluateSettings,
    calibration_report,
    confusion,
    field_scores,
    headline,
    per_class_table,
    plot_confusion,
    plot_misclassified,
    plot_reliability,
    predictions_table,
    reliability_table,
)
from fish_classifier.evaluation.predictions import predict_split
from fish_classifier.layout import (
    FIELD_PREDICTIONS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PER_CLASS_FILE,
    VAL_CONFIDENCE_FILE,
    metrics_dir,
    model_dir,
)
from fish_classifier.model.preprocessing import load_model
from fish_classifier.params import stage_arguments, stage_params
from fish_classifier.serving.inference import KerasBackend, probabilities_for_files
from fish_classifier.temperature import apply_temperature


def main(argv=None) -> None:
    name = stage_arguments(__doc__, argv, takes_model=True).model
    settings = stage_params(evaluate=EvaluateSettings, data=CatchAllLabels)
    params = settings.evaluate
    bins = params.ece_bins
    model_path = model_dir(name) / MODEL_FILE
    out_dir = metrics_dir(name)
    out_dir.mkdir(parents=True, exist_ok=True)

    classes = read_classes("data/classes.json")
    labels = [c["label"] for c in classes]
    displays = [c["display"] for c in classes]
    manifest = read_manifest("data/manifest.csv")
    backend = KerasBackend(load_model(model_path))
    val, test = (
        predict_split(backend, manifest, split, classes, batch_size=params.batch_size, desc=f"{name} {split}")
        for split in ("val", "test")
    )
    y_val, y_test = val.y_true, test.y_true
    val_probs, test_probs = val.probabilities, test.probabilities

    calibration = calibration_report(val_probs, y_val, test_probs, y_test, bins, params.temperature_prior_sigma)
    temperature = calibration["temperature"]
    calibrated = apply_temperature(test_probs, temperature)
    y_pred = test_probs.argmax(axis=1)  # a temperature never changes the top class
    correct = y_pred == y_test
    before = reliability_table(test_probs.max(axis=1), correct, bins)
    after = reliability_table(calibrated.max(axis=1), correct, bins)

    leaked = test.rows["path"].isin(duplicated_from_train(json.loads(Path("data/prepare_report.json").read_text()), "test"))
    clean = ~leaked.to_numpy()

    field = pd.read_csv("data/field/manifest.csv", dtype=str, keep_default_na=False)
    field_probs = np.zeros((0, len(classes)))
    if len(field):
        field_probs = apply_temperature(probabilities_for_files(backend, field["path"], batch_size=params.batch_size,
                                                                desc=f"{name} field")[0], temperature)
    y_field = label_indices(field["label"], classes)

    report = dict(
        **headline(y_test, y_pred, len(classes)),
        val={**headline(y_val, val_probs.argmax(axis=1), len(classes)), "images": len(y_val)},
        test_clean={**headline(y_test[clean], y_pred[clean], len(classes)), "images": int(clean.sum()),
                    "left_out": int((~clean).sum())},
        test_images=len(y_test),
        input_size=backend.input_size,
        images_per_second=round(len(y_test) / test.seconds, 2),
        model_size_mb=round(model_path.stat().st_size / 1e6, 2),
        calibration=calibration,
        field=field_scores(field["label"], y_field, field_probs.argmax(axis=1), classes,
                           settings.data.other_fish_labels),
    )
    (out_dir / METRICS_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    # Beside the metrics, not in them: one column per class and score would swamp `dvc exp show`.
    per_class_table(y_test, y_pred, classes).to_csv(out_dir / PER_CLASS_FILE, index=False)

    predictions_table(test.rows["path"], y_test, calibrated, labels, top_k=params.top_k).to_csv(
        out_dir / "predictions.csv", index=False
    )
    pd.DataFrame({"actual": [displays[i] for i in y_test], "predicted": [displays[i] for i in y_pred]}).to_csv(
        out_dir / "confusion.csv", index=False
    )
    plot_confusion(confusion(y_test, y_pred, len(classes)), displays, out_dir / "confusion.png", f"{name}: test split")
    plot_misclassified(test.rows["path"], y_test, calibrated, displays, out_dir / "misclassified.png",
                       f"{name}: test split", limit=params.gallery_size)
    predictions_table(field["path"], y_field, field_probs, labels, top_k=params.top_k).to_csv(
        out_dir / FIELD_PREDICTIONS_FILE, index=False
    )
    plot_misclassified(field["path"], y_field, field_probs, displays, out_dir / "field_mistakes.png",
                       f"{name}: field photos (taken outside the studio)", limit=params.gallery_size)
    after.to_csv(out_dir / "reliability.csv", index=False)
    plot_reliability(
        {"before (T=1)": before, f"after (T={temperature:.2f})": after}, out_dir / "reliability.png", f"{name}: test split"
    )
    # `select` sets the low-confidence threshold from these calibrated validation confidences.
    pd.DataFrame({"confidence": apply_temperature(val_probs, temperature).max(axis=1)}).to_csv(
        out_dir / VAL_CONFIDENCE_FILE, index=False
    )
    ece = report["calibration"]
    print(
        f"{name}: validation macro F1 {report['val']['macro_f1']:.4f}; test accuracy {report['accuracy']:.4f}, "
        f"macro F1 {report['macro_f1']:.4f} (clean subset of {report['test_clean']['images']}: "
        f"{report['test_clean']['accuracy']:.4f}, {report['test_clean']['macro_f1']:.4f}), "
        f"T {temperature:.3f}, ECE {ece['ece_before']:.4f} -> {ece['ece_after']:.4f}"
        + ("" if not len(field) else f"; field accuracy {report['field']['accuracy']:.1%} of {len(field)} photos, "
           f"species {report['field']['species_accuracy'] or 0:.1%}")
    )


if __name__ == "__main__":
    main()
