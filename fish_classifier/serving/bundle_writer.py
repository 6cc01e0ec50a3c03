"""Writing a deploy bundle (the format `bundle.py` reads): the model and its labels first (`write_bundle`), then
each part hashed into bundle.json as it is added. The select stage writes; serving only reads."""

import hashlib
import json
import math
import shutil
from datetime import datetime, timezone
from pathlib import Path

from fish_classifier.images import open_rgb
from fish_classifier.serving.bundle import BundleError, check_classes, file_sha256, read_json
from fish_classifier.serving.bundle_schema import (
    EXAMPLES_DIR,
    FORMAT_VERSION,
    INFO_FILE,
    LABELS_FILE,
    MODEL_FILE,
    OPTIONAL_PARTS,
    UNKNOWN_FILE,
    inside,
)
from fish_classifier.serving.bundle_schema import HOW_TO_FIX as _HOW_TO_FIX

# A thumbnail of about 256 px at this quality is 10 to 30 KB: a row of eleven stays a few hundred KB.
EXAMPLE_QUALITY = 85


def write_bundle(
    out_dir,
    *,
    model_path,
    classes: list[dict],
    model_name: str,
    temperature: float,
    threshold: float,
    top_k: int,
    metrics: dict,
    data_hash: str,
    parts: tuple[str, ...] = (),
) -> Path:
    """Copy the model and write its labels and serving settings into `out_dir`; returns `out_dir`.

    `parts`: files of OPTIONAL_PARTS that will be added next (`export_for_serving`, `add_unknown_detector`).
    bundle.json requires them from now on, so that a bundle whose writer stopped before adding them is refused.
    """
    out_dir, model_path = Path(out_dir), Path(model_path)
    if not model_path.is_file():
        raise BundleError(f"model file {model_path} does not exist; {_HOW_TO_FIX}")
    check_classes(classes, source="classes")
    unknown_parts = [part for part in parts if part not in OPTIONAL_PARTS]
    if unknown_parts:
        raise ValueError(f"unknown bundle parts {unknown_parts}, expected some of: {', '.join(OPTIONAL_PARTS)}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be within [0, 1], got {threshold}")
    if not top_k >= 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    input_size, outputs = _model_shape(model_path)
    if outputs != len(classes):
        raise BundleError(f"model {model_path} has {outputs} outputs but there are {len(classes)} classes")

    _clear(out_dir)
    shutil.copyfile(model_path, out_dir / MODEL_FILE)
    _write_json(out_dir / LABELS_FILE, {"classes": [{"label": c["label"], "display": c["display"]} for c in classes]})
    _write_json(
        out_dir / INFO_FILE,
        {
            "format_version": FORMAT_VERSION,
            "model": model_name,
            "input_size": input_size,
            "num_classes": len(classes),
            "temperature": float(temperature),
            "threshold": float(threshold),
            "top_k": int(top_k),
            "metrics": metrics,
            "data_hash": data_hash,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": {name: file_sha256(out_dir / name) for name in (MODEL_FILE, LABELS_FILE)},
            "required": [LABELS_FILE, *parts],
        },
    )
    return out_dir


def add_file(path, name: str, **entries) -> dict:
    """Record a file just written into a bundle: its sha256 under `files`, and `entries` at the top level."""
    files = {**_hashed_files(Path(path)), name: file_sha256(inside(Path(path), name))}
    return update_info(path, files=files, **entries)


def add_unknown_detector(path, detector, **details) -> dict:
    """Save an `unknown.UnknownDetector` into a bundle, hashed like the models, with its settings and `details`."""
    detector.save(Path(path) / UNKNOWN_FILE)
    return add_file(path, UNKNOWN_FILE, unknown={"file": UNKNOWN_FILE, "method": detector.method,
                                                 "threshold": detector.threshold, **details})


def add_catch_all_doubt(path, doubt) -> dict | None:
    """Write a `catch_all.CatchAllDoubt` into a bundle's bundle.json, where the Predictor reads it; None: no rule."""
    return None if doubt is None else update_info(path, catch_all_doubt=doubt.to_json())


def add_examples(path, photos, *, size: int) -> list[dict]:
    """Save `photos`, (class entry, image source) pairs, as JPEG thumbnails of at most `size` px a side in the
    bundle's examples/ folder, hashed like the models and listed under `examples`; returns that list."""
    path = Path(path)
    # Replace any earlier row whole, so that no old thumbnail stays listed.
    shutil.rmtree(path / EXAMPLES_DIR, ignore_errors=True)
    (path / EXAMPLES_DIR).mkdir()
    files = {name: sha for name, sha in _hashed_files(path).items() if not name.startswith(f"{EXAMPLES_DIR}/")}
    examples = []
    for index, (entry, source) in enumerate(photos):
        name = f"{EXAMPLES_DIR}/{index}.jpg"
        thumbnail = open_rgb(source, size)
        thumbnail.thumbnail((size, size))  # only ever shrinks
        thumbnail.save(path / name, format="JPEG", quality=EXAMPLE_QUALITY)
        files[name] = file_sha256(path / name)
        examples.append({"file": name, "label": entry["label"], "display": entry["display"]})
    update_info(path, files=files, examples=examples)
    return examples


def update_info(path, **entries) -> dict:
    """Add or replace top-level `entries` in a bundle's bundle.json; returns the new contents."""
    info_path = Path(path) / INFO_FILE
    info = {**read_json(info_path), **entries}
    _write_json(info_path, info)
    return info


def training_data_hash(paths) -> str:
    """sha256 over the given files' contents (the manifests list every training image with its own sha256)."""
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        digest.update(path.as_posix().encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<absent>")
    return "sha256:" + digest.hexdigest()


def _hashed_files(path: Path) -> dict[str, str]:
    """The files a bundle's bundle.json lists so far, name -> sha256."""
    return read_json(path / INFO_FILE).get("files", {})


def _model_shape(model_path: Path) -> tuple[int, int]:
    """(input size, number of outputs), read from the model itself so the bundle cannot disagree with it."""
    from fish_classifier.model.preprocessing import load_model

    model = load_model(model_path)
    return int(model.input_shape[1]), int(model.output_shape[-1])


def _clear(out_dir: Path) -> None:
    # Only ever delete a folder that is empty or already a bundle, never a path given by mistake.
    if out_dir.exists():
        if any(out_dir.iterdir()) and not (out_dir / INFO_FILE).is_file():
            raise BundleError(f"refusing to overwrite {out_dir}: it is not empty and holds no {INFO_FILE}")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)


def _write_json(path: Path, data) -> None:
    # Written aside and renamed, so that a killed writer leaves the old file or the new one, never half of one.
    partial = path.with_name(f".partial-{path.name}")  # as export_litert names its own (.dockerignore leaves both out)
    with open(partial, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
    partial.replace(path)
