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

import pandas as pd

from fish_classifier.data.leakage import duplicated_from_train
from fish_classifier.data.manifest import CatchAllLabels, read_classes, read_manifest
from fish_classifier.evaluation.metrics import EvaluateSettings, confusion
from fish_classifier.evaluation.model_report import evaluate_model
from fish_classifier.evaluation.plots import plot_confusion, plot_misclassified, plot_reliability
from fish_classifier.layout import (
    CLASSES,
    FIELD_MANIFEST,
    FIELD_PREDICTIONS_FILE,
    MANIFEST,
    METRICS_FILE,
    MODEL_FILE,
    PER_CLASS_FILE,
    PREPARE_REPORT,
    VAL_CONFIDENCE_FILE,
    metrics_dir,
    model_dir,
)
from fish_classifier.model.preprocessing import load_model
from fish_classifier.params import stage_arguments, stage_params
from fish_classifier.serving.inference import KerasBackend


def main(argv=None) -> None:
    name = stage_arguments(__doc__, argv, model=str).model  # any name: train checked it, and wrote its model
    params = stage_params(evaluate=EvaluateSettings, data=CatchAllLabels)
    settings = params.evaluate
    model_path, out = model_dir(name) / MODEL_FILE, metrics_dir(name)
    out.mkdir(parents=True, exist_ok=True)

    classes = read_classes(CLASSES)
    leaked = duplicated_from_train(json.loads(PREPARE_REPORT.read_text()), "test")
    field = pd.read_csv(FIELD_MANIFEST, dtype=str, keep_default_na=False)
    report = evaluate_model(KerasBackend(load_model(model_path)), model_path, read_manifest(MANIFEST),
                            classes, leaked_test_paths=leaked, field=field, settings=settings,
                            other_fish_labels=params.data.other_fish_labels, name=name)

    (out / METRICS_FILE).write_text(json.dumps(report.metrics, indent=2) + "\n", encoding="utf-8")
    # Beside the metrics, not in them: one column per class and score would swamp `dvc exp show`.
    report.per_class.to_csv(out / PER_CLASS_FILE, index=False)
    report.predictions(report.test).to_csv(out / "predictions.csv", index=False)
    report.predictions(report.field).to_csv(out / FIELD_PREDICTIONS_FILE, index=False)
    report.confusion_pairs.to_csv(out / "confusion.csv", index=False)
    report.reliability_after.to_csv(out / "reliability.csv", index=False)
    report.val_confidence.to_csv(out / VAL_CONFIDENCE_FILE, index=False)  # select's threshold is set from it

    test, field_photos, displays = report.test, report.field, report.displays
    plot_confusion(confusion(test.y_true, test.probabilities.argmax(axis=1), len(classes)), displays,
                   out / "confusion.png", f"{name}: test split")
    plot_misclassified(test.paths, test.y_true, test.probabilities, displays, out / "misclassified.png",
                       f"{name}: test split", limit=settings.gallery_size)
    plot_misclassified(field_photos.paths, field_photos.y_true, field_photos.probabilities, displays,
                       out / "field_mistakes.png", f"{name}: field photos (taken outside the studio)",
                       limit=settings.gallery_size)
    plot_reliability(report.reliability_curves, out / "reliability.png", f"{name}: test split")
    print(report.line(name))


if __name__ == "__main__":
    main()
