"""Where the pipeline keeps each model's outputs: a folder per model under a parent that holds nothing else.

dvc.yaml's train and evaluate stages write into these folders (`foreach: ${train.models}`), and `select`
depends on the two parents, so that DVC links it to whichever models `train.models` names, with no list
to keep in step (tests/pipeline/test_pipeline_deps.py checks that dvc.yaml spells the same paths).
"""

from pathlib import Path

ZOO_DIR = Path("models/zoo")  # <model>/model.keras, <model>/live/ (the training curves)
MODEL_METRICS_DIR = Path("metrics/models")  # <model>/metrics.json, per_class.csv, predictions, calibration, plots
MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
PER_CLASS_FILE = "per_class.csv"
VAL_CONFIDENCE_FILE = "val_confidence.csv"
FIELD_PREDICTIONS_FILE = "field_predictions.csv"  # evaluate writes it, select reads it


def model_dir(name: str) -> Path:
    return ZOO_DIR / name


def metrics_dir(name: str) -> Path:
    return MODEL_METRICS_DIR / name
