"""Where the pipeline keeps what it reads and writes: every path a stage uses, named once, relative to the repo root.

dvc.yaml spells the same paths for DVC (tests/test_layout.py checks that each stage's deps and outs
hold the layout paths its script uses). Each model's outputs go in a folder of their own under a parent that holds
nothing else: dvc.yaml's train and evaluate stages write into them (`foreach: ${train.models}`), and `select`
depends on the two parents, so that DVC links it to whichever models `train.models` names, with no list to keep
in step. A ground-floor module: it imports nothing, so that serving may import it too.
"""

from pathlib import Path

MANIFEST_NAME = "manifest.csv"  # the photo list of each data folder below: path, label, ... (or path, origin, ...)

# data/: the download and prepare stages' outputs
RAW_DIR = Path("data/raw")  # the dataset as downloaded: a folder per split, in it a folder per species
SPLITS = ("train", "val", "test")  # RAW_DIR's split folders and the manifest's `split` values, in the Drive zip's order
DOWNLOAD_RECORD = Path("data/download.json")
PREPARED_DIR = Path("data/prepared")
MANIFEST = Path("data/manifest.csv")  # every prepared photo: path, label, split, sha256
CLASSES = Path("data/classes.json")
PREPARE_REPORT = Path("data/prepare_report.json")
NEAR_DUPLICATES_PLOT = Path("data/near_duplicates.png")

# data/: the photo sets of the other data stages, each a folder with its manifest.csv
FEEDBACK_DIR = Path("data/feedback")  # the users' marks: train/, field/ and not-fish/
FEEDBACK_TRAIN = FEEDBACK_DIR / "train" / MANIFEST_NAME  # none of the three when the feedback stage has not run
FEEDBACK_FIELD = FEEDBACK_DIR / "field" / MANIFEST_NAME
FEEDBACK_NOT_FISH = FEEDBACK_DIR / "not-fish" / MANIFEST_NAME
UNKNOWN_DIR = Path("data/unknown")  # photos that are none of the species, to measure the detector
UNKNOWN_MANIFEST = UNKNOWN_DIR / MANIFEST_NAME
FIELD_DIR = Path("data/field")  # the species photographed outside the studio
FIELD_MANIFEST = FIELD_DIR / MANIFEST_NAME
OUTLIER_SOURCE_DIR = Path("data/outlier_source")  # the photos drawn from data.outlier_source
OUTLIERS_DIR = Path("data/outliers")  # photos that are no fish, to fit the detector on: the draw and the feedback's
OUTLIERS_MANIFEST = OUTLIERS_DIR / MANIFEST_NAME
COMPOSITED_DIR = Path("data/composited")  # the studio fish put onto other backgrounds
COMPOSITED_MANIFEST = COMPOSITED_DIR / MANIFEST_NAME
COMPOSITE_MASKS_PLOT = Path("data/composite_masks.png")
COMPOSITE_SETS_DIR = Path("data/composite_sets")  # <model>.csv: the composites each model trains on
AUGMENTED_DIR = Path("data/augmented")
AUGMENTED_MANIFEST = AUGMENTED_DIR / MANIFEST_NAME

# models/ and metrics/
ZOO_DIR = Path("models/zoo")  # <model>/model.keras, <model>/live/ (the training curves)
MODEL_METRICS_DIR = Path("metrics/models")  # <model>/metrics.json, per_class.csv, predictions, calibration, plots
DEPLOY_DIR = Path("models/deploy")  # the deploy bundle the app serves
UNKNOWN_METRICS_DIR = Path("metrics/unknown")  # the detector's score histogram and trade-off
SUMMARY_JSON = Path("metrics/summary.json")
SUMMARY_MD = Path("metrics/summary.md")

MODEL_FILE = "model.keras"  # in a model's folder under ZOO_DIR, and in the deploy bundle
METRICS_FILE = "metrics.json"
PER_CLASS_FILE = "per_class.csv"
VAL_CONFIDENCE_FILE = "val_confidence.csv"
FIELD_PREDICTIONS_FILE = "field_predictions.csv"  # evaluate writes it, select reads it


def model_dir(name: str) -> Path:
    return ZOO_DIR / name


def metrics_dir(name: str) -> Path:
    return MODEL_METRICS_DIR / name


def composite_set(name: str) -> Path:
    """The composites model `name` trains on (none unless train.<name>.composites)."""
    return COMPOSITE_SETS_DIR / f"{name}.csv"
