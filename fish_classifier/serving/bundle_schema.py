"""What a deploy bundle's bundle.json may say: its file names, its format version, and `BundleInfo`,
the typed reading that `read_bundle` builds and checks once; and `apply_temperature`, what its temperature means.

Everything that serving acts on is checked here, so that nothing further down meets a wrong type, a
non-finite number, or a file name that leads out of the bundle folder; each problem is one BundleError
naming bundle.json and the bad value.
"""

import math
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath

import numpy as np

from fish_classifier.layout import MODEL_FILE  # a model's file in models/zoo and in the bundle: one name, one home
from fish_classifier.serving.catch_all import CatchAllDoubt

SERVING_MODEL_FILE = "model.tflite"
UNKNOWN_FILE = "unknown.npz"
LABELS_FILE = "labels.json"
INFO_FILE = "bundle.json"
EXAMPLES_DIR = "examples"

# The bundle format this code writes and reads. Bump it when a reader of the old version would misread
# or half-serve a new bundle (a new file it must check, a setting it must apply); a reader refuses newer ones.
FORMAT_VERSION = 2  # 2: catch_all_doubt, which the Predictor must apply
# The parts `write_bundle` may promise a bundle will have, on top of labels.json (model.keras is never
# required: the Docker image leaves it out).
OPTIONAL_PARTS = (SERVING_MODEL_FILE, UNKNOWN_FILE)

HOW_TO_FIX = "run `dvc repro` to train, evaluate and select a model"
HOW_TO_REBUILD = "rebuild the bundle with `dvc repro select`"

TINY = 1e-12  # the smallest probability taken to a log

_REQUIRED_KEYS = ("model", "input_size", "num_classes", "temperature", "threshold", "top_k", "files", "required")


class BundleError(Exception):
    """A deploy bundle that is missing or broken; the message says what and how to get a good one."""


@dataclass(frozen=True)
class ExampleEntry:
    file: str  # relative to the bundle folder, inside it
    label: str
    display: str


@dataclass(frozen=True)
class UnknownEntry:
    """The unknown-photo detector: its file, method and threshold, and the share of each group of photos it
    flagged when the bundle was built (e.g. {"test fish": 0.005, "unknown": 0.83}; empty when not measured)."""

    file: str
    method: str
    threshold: float
    flagged: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class HeadlineMetrics:
    """The model's headline scores on the test split, as `evaluate` measured them; None where a bundle lacks one."""

    accuracy: float | None = None
    macro_f1: float | None = None
    macro_precision: float | None = None
    macro_recall: float | None = None


@dataclass(frozen=True)
class BundleInfo:
    """bundle.json, checked: the settings the Predictor applies and the files the bundle must have."""

    format_version: int
    model: str
    input_size: int
    num_classes: int
    temperature: float  # the T of `apply_temperature`
    threshold: float
    top_k: int
    files: dict[str, str]  # name (relative, inside the bundle) -> sha256
    required: tuple[str, ...]  # the files the bundle must have (read_bundle checks they are in `files`)
    examples: tuple[ExampleEntry, ...] = ()
    unknown: UnknownEntry | None = None  # the unknown-photo detector
    catch_all_doubt: CatchAllDoubt | None = None  # when a catch-all answer is flagged low-confidence
    metrics: HeadlineMetrics = HeadlineMetrics()
    # Which bundle this is: the sha256 of the training data it was made from, and when (UTC, ISO 8601).
    data_hash: str | None = None
    created_at: str | None = None

    @classmethod
    def parse(cls, data, info_path: Path) -> "BundleInfo":
        """Check what json.load gave for `info_path`; raises BundleError naming the first problem."""
        check = _Checker(info_path)
        if not isinstance(data, dict):
            check.fail(f"expected a JSON object, got {_kind(data)}")
        version = check_format_version(data, info_path)
        missing = [key for key in _REQUIRED_KEYS if key not in data]
        if missing:
            raise BundleError(f"{info_path} lacks {', '.join(missing)}; {HOW_TO_FIX}")
        files = check.mapping("files", data["files"], "an object of file name -> sha256")
        for name, sha in files.items():
            check.path(name, "files")
            if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
                check.fail(f"files: the sha256 of {name} must be 64 hex digits, got {sha!r}")
        required = [check.path(name, "required") for name in check.strings("required", data["required"])]
        if UNKNOWN_FILE in files and "unknown" not in data:  # it would be served without it
            check.fail(f"it has {UNKNOWN_FILE} but no unknown entry to say how to use it")
        return cls(
            format_version=version,
            model=check.text("model", data["model"]),
            input_size=check.count("input_size", data["input_size"]),
            num_classes=check.count("num_classes", data["num_classes"]),
            temperature=check.number("temperature", data["temperature"], "a finite number > 0", lambda v: v > 0),
            threshold=check.number("threshold", data["threshold"], "a number within [0, 1]", lambda v: 0 <= v <= 1),
            top_k=check.count("top_k", data["top_k"]),
            files=files,
            required=tuple(required),
            examples=_examples(check, data.get("examples", []), files),
            unknown=_unknown(check, data["unknown"], files) if "unknown" in data else None,
            catch_all_doubt=_doubt(check, data["catch_all_doubt"]) if "catch_all_doubt" in data else None,
            metrics=_metrics(check, data.get("metrics", {})),
            data_hash=check.optional_text("data_hash", data.get("data_hash")),
            created_at=check.optional_text("created_at", data.get("created_at")),
        )


def apply_temperature(probabilities, temperature: float) -> np.ndarray:
    """Calibrated probabilities softmax(log(p) / T) for a (n, classes) array of softmax outputs: temperature
    scaling's one formula, which calibration fits T for and the Predictor applies with the bundle's T.

    The models end in a softmax, so log(p) is the logit vector up to a constant per image, and softmax(log(p) / T)
    is exactly temperature scaling of the logits."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), TINY, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def check_format_version(data: dict, info_path: Path) -> int:
    """The bundle's format version, refused when missing (an older bundle, which cannot show it is complete) or
    newer than FORMAT_VERSION."""
    if "format_version" not in data:
        raise BundleError(f"{info_path} has no format_version: a bundle from before bundle formats, which cannot "
                          f"show that it is complete; {HOW_TO_REBUILD}")
    version = _Checker(info_path).count("format_version", data["format_version"])
    if version > FORMAT_VERSION:
        raise BundleError(f"{info_path}: bundle format {version} is newer than this fish-classifier reads "
                          f"({FORMAT_VERSION}); upgrade fish-classifier to serve it, or rebuild it with this version "
                          "(`dvc repro select`)")
    return version


def inside(folder: Path, name: str) -> Path:
    """`folder / name`, or ValueError when `name` is not a plain relative path that stays inside `folder`
    (absolute, `..`, a symlink leading out)."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise ValueError(f"{name!r} is not a file name")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or pure.as_posix() != name or name == ".":
        raise ValueError(f"{name!r} is not a plain relative path inside the bundle")
    base = folder.resolve()
    target = (folder / name).resolve()
    if target == base or not target.is_relative_to(base):
        raise ValueError(f"{name!r} leads outside the bundle (to {target})")
    return folder / name


class _Checker:
    """One bundle.json's checks, each failing with a BundleError that names the file and the bad value."""

    def __init__(self, info_path: Path):
        self.info_path = info_path

    def fail(self, problem: str):
        raise BundleError(f"{self.info_path}: {problem}; {HOW_TO_REBUILD}")

    def number(self, key: str, value, rule: str, holds=lambda value: True) -> float:
        # bool is an int to Python, never a setting; NaN and infinities hold no rule here.
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or not holds(value)):
            self.fail(f"{key} must be {rule}, got {value!r}")
        return float(value)

    def count(self, key: str, value) -> int:
        return int(self.number(key, value, "a whole number >= 1", lambda v: float(v).is_integer() and v >= 1))

    def text(self, key: str, value) -> str:
        if not isinstance(value, str) or not value:
            self.fail(f"{key} must be a non-empty string, got {value!r}")
        return value

    def optional_text(self, key: str, value) -> str | None:
        return None if value is None else self.text(key, value)

    def mapping(self, key: str, value, rule: str) -> dict:
        if not isinstance(value, dict):
            self.fail(f"{key} must be {rule}, got {_kind(value)}")
        return value

    def strings(self, key: str, value) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.fail(f"{key} must be a list of file names, got {value!r}")
        return value

    def path(self, name, key: str) -> str:
        try:
            inside(self.info_path.parent, name)
        except ValueError as exc:
            self.fail(f"{key}: {exc}")
        return name


def _examples(check: _Checker, examples, files: dict) -> tuple[ExampleEntry, ...]:
    """Each example must be a hashed file of the bundle: the app shows it as the species it names."""
    if not isinstance(examples, list):
        check.fail(f"examples must be a list, got {examples!r}")
    entries = []
    for example in examples:
        if not isinstance(example, dict) or not {"file", "label", "display"} <= example.keys() or not all(
                isinstance(example[key], str) for key in ("file", "label", "display")):
            check.fail(f"each example needs 'file', 'label' and 'display' as strings, got {example!r}")
        check.path(example["file"], "examples")
        if example["file"] not in files:
            check.fail(f"example {example['file']} has no hash in files")
        entries.append(ExampleEntry(example["file"], example["label"], example["display"]))
    return tuple(entries)


def _unknown(check: _Checker, unknown, files: dict) -> UnknownEntry:
    """The detector's entry: the Predictor loads unknown.npz whenever it is there, so it must be hashed."""
    unknown = check.mapping("unknown", unknown, "an object")
    if unknown.get("file") != UNKNOWN_FILE:
        check.fail(f"unknown.file must be {UNKNOWN_FILE!r}, got {unknown.get('file')!r}")
    if UNKNOWN_FILE not in files:
        check.fail(f"it has an unknown-photo detector but no hash for {UNKNOWN_FILE}")
    check.text("unknown.method", unknown.get("method"))  # which ones exist is unknown.py's to say, at load
    threshold = check.number("unknown.threshold", unknown.get("threshold"), "a finite number")
    figures = unknown.get("figures")
    flagged = {}
    if figures is not None:
        flagged = check.mapping("unknown.figures", figures, "an object or null").get("flagged", {})
        if not isinstance(flagged, dict):
            check.fail(f"unknown.figures.flagged must be an object, got {_kind(flagged)}")
        flagged = {group: check.number(f"unknown.figures.flagged[{group!r}]", share, "a share within [0, 1]",
                                       lambda v: 0 <= v <= 1) for group, share in flagged.items()}
    return UnknownEntry(UNKNOWN_FILE, unknown["method"], threshold, flagged)


def _doubt(check: _Checker, doubt) -> CatchAllDoubt:
    try:
        return CatchAllDoubt.from_json(doubt)
    except ValueError as exc:
        check.fail(str(exc))


def _metrics(check: _Checker, metrics) -> HeadlineMetrics:
    """The headline test scores the app shows; the rest of `metrics` (validation, calibration, field) is only
    kept in bundle.json, for a reader of the file."""
    metrics = check.mapping("metrics", metrics, "an object")
    return HeadlineMetrics(**{score.name: check.number(f"metrics.{score.name}", metrics[score.name],
                                                   "a score within [0, 1]", lambda v: 0 <= v <= 1)
                          for score in fields(HeadlineMetrics) if score.name in metrics})


def _kind(value) -> str:
    return "null" if value is None else f"a {type(value).__name__} ({value!r:.60})"
