"""The deploy bundle: the one folder the app, the CLI and the Docker image load.

    models/deploy/
        model.keras   the selected model (raw RGB in [0, 255] in, softmax out)
        model.tflite  the same model exported for serving without TensorFlow (fish_classifier.serving.export)
        unknown.npz   the unknown-photo detector fitted on the model's embeddings (fish_classifier.serving.unknown)
        labels.json   {"classes": [{"label", "display"}, ...]} in model output order
        examples/     optional: <n>.jpg, small thumbnails of test photos the app offers to try (`add_examples`)
        bundle.json   format_version, model (its name in the zoo), input_size, num_classes, temperature,
                      threshold, metrics (its scores), data_hash, created_at, files (the sha256
                      of every other file), required (the files it must have, promised when it is
                      first written), serving (the export's parity with model.keras) and
                      unknown (the detector's method, threshold and figures), examples
                      ([{"file", "label", "display"}, ...], when the bundle has them)

A bundle needs at least one of the two models: the Docker image carries model.tflite only.
`read_bundle` checks bundle.json once into a typed `BundleInfo` (bundle_schema.py), refuses a bundle missing a
required file, and checks every file against its sha256, so a changed or corrupt file is refused at load.
bundle_writer.py writes a bundle (the select stage, aside, then moved into place whole by bundle_publish.py).
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from fish_classifier.layout import DEPLOY_DIR
from fish_classifier.serving.bundle_schema import (
    INFO_FILE,
    LABELS_FILE,
    MODEL_FILE,
    SERVING_MODEL_FILE,
    UNKNOWN_FILE,
    BundleError,
    BundleInfo,
    HeadlineMetrics,
    UnknownEntry,
)
from fish_classifier.serving.bundle_schema import HOW_TO_FIX as _HOW_TO_FIX
from fish_classifier.serving.bundle_schema import HOW_TO_REBUILD as _HOW_TO_REBUILD

DEFAULT_BUNDLE_DIR = DEPLOY_DIR  # the bundle the select stage writes: what the app, the CLI and bench serve


@dataclass(frozen=True)
class Example:
    """One example photo of the bundle: its thumbnail and the species it shows."""

    path: Path
    label: str
    display: str


@dataclass(frozen=True)
class Bundle:
    path: Path
    model_path: Path | None  # model.keras, when the bundle has it
    classes: list[dict]
    spec: BundleInfo  # bundle.json checked: what serving acts on and what the app shows
    serving_model_path: Path | None = None  # model.tflite, when the bundle has it

    @property
    def model_name(self) -> str:
        return self.spec.model

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    @property
    def temperature(self) -> float:
        return self.spec.temperature

    @property
    def threshold(self) -> float:
        return self.spec.threshold

    @property
    def top_k(self) -> int:
        """How many of the most likely species the app and the CLI show (params.yaml's select.top_k)."""
        return self.spec.top_k

    @property
    def metrics(self) -> HeadlineMetrics:
        """The model's headline test scores (each None when the bundle does not have it)."""
        return self.spec.metrics

    @property
    def unknown(self) -> UnknownEntry | None:
        """The unknown-photo detector's entry: method, threshold and the share of each group it flagged."""
        return self.spec.unknown

    @property
    def unknown_path(self) -> Path | None:
        """The unknown-photo detector's file, when the bundle has one."""
        return self.path / UNKNOWN_FILE if self.spec.unknown else None

    @property
    def examples(self) -> list[Example]:
        """The example photos, one per species in class order; none in a bundle made before they existed."""
        return [Example(self.path / entry.file, entry.label, entry.display) for entry in self.spec.examples]


def read_bundle(path=DEFAULT_BUNDLE_DIR, *, finished: bool = True) -> Bundle:
    """Check and read a bundle folder; raises BundleError naming the missing or broken part.

    `finished=False` reads a bundle still being built (`export_for_serving` does): every check but that the
    files bundle.json promises (`required`) are all there yet. Serving never passes it."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"no deploy bundle at {path} (folder not found); {_HOW_TO_FIX}")
    for name in (LABELS_FILE, INFO_FILE):
        if not (path / name).is_file():
            raise BundleError(f"deploy bundle {path} is incomplete: {name} is missing; {_HOW_TO_FIX}")
    model_path, serving_model_path = (path / MODEL_FILE, path / SERVING_MODEL_FILE)
    if not model_path.is_file() and not serving_model_path.is_file():
        raise BundleError(
            f"deploy bundle {path} is incomplete: it has neither {SERVING_MODEL_FILE} nor {MODEL_FILE}; {_HOW_TO_FIX}"
        )
    spec = BundleInfo.parse(read_json(path / INFO_FILE), path / INFO_FILE)
    labels = read_json(path / LABELS_FILE)
    classes = labels.get("classes") if isinstance(labels, dict) else None
    check_classes(classes, source=str(path / LABELS_FILE))
    if spec.num_classes != len(classes):
        raise BundleError(
            f"{path / INFO_FILE} says {spec.num_classes} classes but {LABELS_FILE} lists {len(classes)}; "
            + _HOW_TO_FIX
        )
    _check_files(path, spec, finished)
    known = {entry["label"] for entry in classes}
    for example in spec.examples:  # the app shows each as the species it names
        if example.label not in known:
            raise BundleError(f"{path / INFO_FILE}: example {example.file} shows {example.label!r}, "
                              f"not one of the bundle's classes; {_HOW_TO_REBUILD}")
    doubt = spec.catch_all_doubt
    if doubt is not None and not set(doubt.labels) <= known:
        raise BundleError(f"{path / INFO_FILE}: catch_all_doubt names {sorted(set(doubt.labels) - known)}, not among "
                          f"the bundle's classes; {_HOW_TO_REBUILD}")
    return Bundle(
        path=path,
        model_path=model_path if model_path.is_file() else None,
        classes=classes,
        serving_model_path=serving_model_path if serving_model_path.is_file() else None,
        spec=spec,
    )


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes: what bundle.json keeps for each file of the bundle, checked at load."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def bundle_version(path=DEFAULT_BUNDLE_DIR) -> str:
    """The bundle's version, as feedback records name it: the first 12 hex digits of the sha256 of its
    bundle.json, which lists every file of the bundle with its own sha256."""
    return file_sha256(Path(path) / INFO_FILE)[:12]


def _check_files(path: Path, spec: BundleInfo, finished: bool) -> None:
    """The bundle must have every file it requires, and each file bundle.json lists must match its sha256;
    only model.keras may be left out (the Docker image)."""
    missing = [name for name in spec.required if name not in spec.files]  # its writer stopped before adding them
    if finished and missing:
        raise BundleError(f"deploy bundle {path} is incomplete: {' and '.join(missing)} "
                          f"{'is' if len(missing) == 1 else 'are'} missing; {_HOW_TO_REBUILD}")
    for name, expected in spec.files.items():
        file = path / name
        if not file.is_file():
            if name == MODEL_FILE:
                continue
            raise BundleError(f"deploy bundle {path} is incomplete: {name} is missing; {_HOW_TO_REBUILD}")
        if file_sha256(file) != expected:
            raise BundleError(
                f"{file} does not match the sha256 in {INFO_FILE} (changed or corrupt since the bundle was made); "
                + _HOW_TO_REBUILD
            )


def check_classes(classes, *, source: str) -> None:
    if not isinstance(classes, list) or not classes:
        raise BundleError(f"{source}: expected a non-empty list of classes; {_HOW_TO_FIX}")
    for entry in classes:
        if not isinstance(entry, dict) or not all(isinstance(entry.get(key), str) and entry[key]
                                                  for key in ("label", "display")):
            raise BundleError(f"{source}: each class needs 'label' and 'display' as strings, got {entry!r}; "
                              + _HOW_TO_FIX)
    labels = [entry["label"] for entry in classes]
    if len(set(labels)) != len(labels):
        raise BundleError(f"{source}: labels must be distinct, got {labels}; {_HOW_TO_FIX}")


def read_json(path: Path):
    try:
        text = path.read_bytes().decode("utf-8")
        return json.loads(text)
    except OSError as exc:
        problem = str(exc)
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text: {exc.reason} at byte {exc.start}"
    except json.JSONDecodeError as exc:
        problem = str(exc)
    except RecursionError:  # json gives up on deep nesting with Python's recursion limit
        problem = "JSON nested too deeply"
    raise BundleError(f"cannot read {path} ({problem}); {_HOW_TO_FIX}")
