"""One model's evaluation as one object: its scores on validation, test, the clean test subset and the field
photos, its calibration, and the tables and photos the evaluate stage writes and draws."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fish_classifier.data.manifest import label_indices
from fish_classifier.evaluation.metrics import (
    EvaluateSettings,
    calibrate,
    field_scores,
    headline,
    per_class_table,
    reliability_table,
)
from fish_classifier.evaluation.predictions import predict_split, predictions_table
from fish_classifier.serving.bundle_schema import apply_temperature
from fish_classifier.serving.inference import probabilities_for_files


@dataclass(frozen=True)
class ScoredPhotos:
    """Photos with their true class indices and the model's calibrated probabilities."""

    paths: list[str]
    y_true: np.ndarray
    probabilities: np.ndarray


@dataclass(frozen=True)
class ModelReport:
    metrics: dict  # metrics.json: the headline scores, calibration and field figures
    per_class: pd.DataFrame  # each class's test scores
    test: ScoredPhotos
    field: ScoredPhotos
    val_confidence: pd.DataFrame  # the calibrated validation confidences `select` sets the threshold from
    reliability_before: pd.DataFrame  # the test split's reliability diagram, as the model gives it
    reliability_after: pd.DataFrame  # and after the temperature
    labels: list[str]
    displays: list[str]
    top_k: int

    def predictions(self, photos: ScoredPhotos) -> pd.DataFrame:
        classes = [{"label": label, "display": display} for label, display in zip(self.labels, self.displays)]
        return predictions_table(photos.paths, photos.y_true, photos.probabilities, classes, top_k=self.top_k)

    @property
    def reliability_curves(self) -> dict[str, pd.DataFrame]:
        return {"before (T=1)": self.reliability_before,
                f"after (T={self.metrics['calibration']['temperature']:.2f})": self.reliability_after}

    @property
    def confusion_pairs(self) -> pd.DataFrame:
        predicted = self.test.probabilities.argmax(axis=1)
        return pd.DataFrame({"actual": [self.displays[i] for i in self.test.y_true],
                             "predicted": [self.displays[i] for i in predicted]})

    def line(self, name: str) -> str:
        """The report in one line, for the stage's log."""
        m, ece, field = self.metrics, self.metrics["calibration"], self.metrics["field"]
        return (f"{name}: validation macro F1 {m['val']['macro_f1']:.4f}; test accuracy {m['accuracy']:.4f}, "
                f"macro F1 {m['macro_f1']:.4f} (clean subset of {m['test_clean']['images']}: "
                f"{m['test_clean']['accuracy']:.4f}, {m['test_clean']['macro_f1']:.4f}), "
                f"T {ece['temperature']:.3f}, ECE {ece['ece_before']:.4f} -> {ece['ece_after']:.4f}"
                + ("" if not field["images"] else f"; field accuracy {field['accuracy']:.1%} of {field['images']} "
                   f"photos, species {field['species_accuracy'] or 0:.1%}"))


def evaluate_model(backend, model_path, manifest: pd.DataFrame, classes: list[dict], *, leaked_test_paths,
                   field: pd.DataFrame, settings: EvaluateSettings, other_fish_labels: list[str],
                   name: str) -> ModelReport:
    """Score `backend` (the model at `model_path`) on the manifest's validation and test photos and on the `field`
    photos (path, label; maybe none); the temperature is fitted on validation. `leaked_test_paths`: the test photos
    with a duplicate in train, left out of the clean subset."""
    val, test = (predict_split(backend, manifest, split, classes, batch_size=settings.batch_size,
                               desc=f"{name} {split}") for split in ("val", "test"))
    n, bins = len(classes), settings.ece_bins
    calibration, calibrated = calibrate(val.probabilities, val.y_true, test.probabilities, test.y_true, bins,
                                        settings.temperature_prior_sigma)
    temperature = calibration["temperature"]
    y_pred = test.probabilities.argmax(axis=1)  # a temperature never changes the top class
    correct = y_pred == test.y_true
    clean = ~test.rows["path"].isin(leaked_test_paths).to_numpy()

    field_probs = np.zeros((0, n))
    if len(field):
        field_probs = apply_temperature(probabilities_for_files(backend, field["path"], batch_size=settings.batch_size,
                                                                desc=f"{name} field")[0], temperature)
    y_field = label_indices(field["label"], classes)
    metrics = dict(
        **headline(test.y_true, y_pred, n),
        val={**headline(val.y_true, val.probabilities.argmax(axis=1), n), "images": len(val.y_true)},
        test_clean={**headline(test.y_true[clean], y_pred[clean], n), "images": int(clean.sum()),
                    "left_out": int((~clean).sum())},
        test_images=len(test.y_true),
        input_size=backend.input_size,
        images_per_second=round(len(test.y_true) / test.seconds, 2),
        model_size_mb=round(Path(model_path).stat().st_size / 1e6, 2),
        calibration=calibration,
        field=field_scores(field["label"], y_field, field_probs, classes, other_fish_labels),
    )
    return ModelReport(
        metrics=metrics,
        per_class=per_class_table(test.y_true, y_pred, classes),
        test=ScoredPhotos(list(test.rows["path"]), test.y_true, calibrated),
        field=ScoredPhotos(list(field["path"]), y_field, field_probs),
        val_confidence=pd.DataFrame({"confidence": apply_temperature(val.probabilities, temperature).max(axis=1)}),
        reliability_before=reliability_table(test.probabilities.max(axis=1), correct, bins),
        reliability_after=reliability_table(calibrated.max(axis=1), correct, bins),
        labels=[c["label"] for c in classes],
        displays=[c["display"] for c in classes],
        top_k=settings.top_k,
    )
