"""The one inference path: a `Predictor` loads a deploy bundle once and classifies images.

The app, the batch CLI and the tests all go through it. It reads images with
`fish_classifier.images.load_pixels`, the very function training and evaluation
use, and it never imports training code.

It runs the bundle's `model.tflite` with LiteRT when the bundle has one, else its
`model.keras`. Importing this module needs neither TensorFlow nor Keras: only the
Keras backend imports them, so the Docker image can leave them out.
"""

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fish_classifier.bundle import DEFAULT_BUNDLE_DIR, MODEL_FILE, SERVING_MODEL_FILE, BundleError, read_bundle
from fish_classifier.calibration import apply_temperature
from fish_classifier.images import ImageError, load_pixels
from fish_classifier.serving import CLASS_MAPS, EMBEDDING, PROBABILITIES, LiteRTBackend, serving_model
from fish_classifier.unknown import UnknownDetector

BACKENDS = ("auto", "litert", "keras")  # auto: LiteRT when the bundle has model.tflite, else Keras


@dataclass
class Prediction:
    source: str
    label: str | None
    display_name: str | None
    confidence: float
    top_k: list[tuple[str, str, float]] = field(default_factory=list)
    is_low_confidence: bool = False
    error: str | None = None
    # Unlike anything the model was trained on (fish_classifier.unknown); its label is then not an answer.
    is_unknown: bool = False
    unknown_score: float = math.nan


class KerasBackend:
    """Runs a project `.keras` model on batches of raw RGB pixels.

    A compiled graph called on the whole batch, not `model.predict` per image,
    keeps a single photo well under 30 ms on a laptop CPU. Another serving
    format only needs a class with the same `__call__` and `class_maps_and_probs`
    (see `fish_classifier.serving.LiteRTBackend`).
    """

    def __init__(self, model):
        import tensorflow as tf

        self.model = model
        self.input_size = int(model.input_shape[1])
        spec = tf.TensorSpec((None, self.input_size, self.input_size, 3), tf.float32)
        # One signature with a free batch size: no retracing whatever the batch holds.
        self._probs = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        self._spec = spec
        self._both = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities (n, classes) for uint8 or float pixels (n, S, S, 3)."""
        return self._probs(np.asarray(batch, dtype=np.float32)).numpy().astype(np.float32)

    def class_maps_and_probs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class maps (n, h, w, classes), probabilities (n, classes)): two of the serving model's outputs."""
        outputs = self.outputs(batch)
        return outputs[CLASS_MAPS], outputs[PROBABILITIES]

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The serving model's outputs by name: probabilities, class maps and the embedding."""
        if self._both is None:
            import tensorflow as tf

            both = serving_model(self.model)
            self._both = tf.function(lambda x: both(x, training=False), input_signature=[self._spec])
        outputs = self._both(np.asarray(batch, dtype=np.float32))
        return {name: tensor.numpy().astype(np.float32) for name, tensor in outputs.items()}


def probabilities_for_files(backend, paths, *, batch_size: int, desc: str = "images") -> tuple[np.ndarray, float]:
    """Run `backend` over image files in batches; returns (probabilities, seconds spent in the model)."""
    return _over_files(backend, backend, paths, batch_size=batch_size, desc=desc)


def outputs_for_files(backend, paths, *, batch_size: int, desc: str = "images") -> dict[str, np.ndarray]:
    """The serving model's probabilities and embedding (what the unknown-photo detector scores) per image file."""

    def run(batch):
        outputs = backend.outputs(batch)
        return {name: outputs[name] for name in (PROBABILITIES, EMBEDDING)}

    return _over_files(backend, run, paths, batch_size=batch_size, desc=desc)[0]


def _over_files(backend, run, paths, *, batch_size: int, desc: str) -> tuple[np.ndarray, float]:
    """`run` over image files in batches at `backend`'s input size; returns (its outputs, seconds spent in it).
    `run` returns an array, or a dict of arrays (concatenated name by name).

    A worker thread decodes the next batch while the model runs on this one. A
    warm-up call before timing keeps graph building out of the measured speed.
    """
    from tqdm import tqdm

    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("no images to predict")
    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    size = backend.input_size

    def load(chunk):
        return np.stack([load_pixels(p, size) for p in chunk])

    outputs, seconds = [], 0.0
    with ThreadPoolExecutor(max_workers=1) as pool, tqdm(total=len(paths), desc=desc, unit="img") as bar:
        upcoming = pool.submit(load, chunks[0])
        for i in range(len(chunks)):
            batch = upcoming.result()
            if i + 1 < len(chunks):
                upcoming = pool.submit(load, chunks[i + 1])
            if i == 0:
                run(batch)
            start = time.perf_counter()
            outputs.append(run(batch))
            seconds += time.perf_counter() - start
            bar.update(len(batch))
    if isinstance(outputs[0], dict):
        return {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}, seconds
    return np.concatenate(outputs), seconds


class Predictor:
    """Classifies fish photos with a deploy bundle; see `predict` and `class_activation_map`."""

    def __init__(
        self,
        bundle_dir=DEFAULT_BUNDLE_DIR,
        *,
        batch_size: int = 32,
        backend: str = "auto",
        num_threads: int | None = None,
    ):
        """`backend`: one of BACKENDS; `num_threads`: LiteRT's CPU threads (default: every usable CPU)."""
        bundle = read_bundle(bundle_dir)
        self.bundle = bundle
        self.info = bundle.info
        self.classes = bundle.classes
        self.model_name = bundle.model_name
        self.input_size = bundle.input_size
        self.temperature = bundle.temperature
        self.threshold = bundle.threshold
        self.batch_size = batch_size
        self.backend, self._backend = _load_backend(bundle, backend, num_threads)
        if self._backend.input_size != self.input_size:
            raise BundleError(
                f"{bundle.path}: bundle.json says input size {self.input_size} but the model takes "
                f"{self._backend.input_size}; run `dvc repro` to rebuild the bundle"
            )
        self.detector = _load_detector(bundle)
        # Build the graph now (about a second), so the first photo a user sends is as fast as the rest;
        # its outputs show whether the model, the labels and the detector were made for each other.
        blank = np.zeros((1, self.input_size, self.input_size, 3), dtype=np.float32)
        if self.detector is None:
            _check_widths(bundle, self._backend(blank), None, None)
        else:
            outputs = self._backend.outputs(blank)
            _check_widths(bundle, outputs[PROBABILITIES], outputs[EMBEDDING], self.detector)
            self.detector.score(outputs[EMBEDDING])

    def predict(self, images, top_k: int = 5, threshold: float | None = None) -> list[Prediction]:
        """One Prediction per image, in input order; an unreadable image gets `error` set instead of a label.

        `images`: paths, bytes, file-likes or PIL images (or a single one of those).
        `threshold` overrides the bundle's low-confidence threshold.
        """
        images = _as_list(images)
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        top_k = min(top_k, len(self.classes))
        threshold = self.threshold if threshold is None else float(threshold)
        results: list[Prediction] = []
        for start in range(0, len(images), self.batch_size):
            results.extend(self._predict_batch(images[start : start + self.batch_size], start, top_k, threshold))
        return results

    def class_activation_map(self, image, class_index: int | None = None) -> np.ndarray:
        """Where the model looked: a (h, w) float32 map in [0, 1] for `class_index` (default: the predicted class)."""
        if class_index is not None and not 0 <= class_index < len(self.classes):
            raise ValueError(f"class_index must be in 0..{len(self.classes) - 1}, got {class_index}")
        pixels = load_pixels(image, self.input_size)[np.newaxis]
        class_maps, probs = self._backend.class_maps_and_probs(pixels)
        if class_index is None:
            class_index = int(np.argmax(probs[0]))
        cam = np.maximum(class_maps[0, :, :, class_index], 0.0)
        peak = cam.max()
        return (cam / peak if peak > 0 else np.zeros_like(cam)).astype(np.float32)

    def _predict_batch(self, images, offset: int, top_k: int, threshold: float) -> list[Prediction]:
        results: list[Prediction | None] = [None] * len(images)
        readable, pixels = [], []
        for i, image in enumerate(images):
            source = _source_name(image, offset + i)
            try:
                pixels.append(load_pixels(image, self.input_size))
                readable.append((i, source))
            except ImageError as exc:
                results[i] = _failed(source, str(exc))
            except OSError as exc:
                results[i] = _failed(source, f"cannot read the file ({exc.strerror or exc})")
        if pixels:
            if self.detector is None:
                probs, scores = self._backend(np.stack(pixels)), np.full(len(pixels), math.nan)
            else:
                outputs = self._backend.outputs(np.stack(pixels))
                probs, scores = outputs[PROBABILITIES], self.detector.score(outputs[EMBEDDING])
            probs = apply_temperature(probs, self.temperature)
            for (i, source), row, score in zip(readable, probs, scores):
                ranked = np.argsort(-row)[:top_k]
                best = self.classes[ranked[0]]
                confidence = float(row[ranked[0]])
                results[i] = Prediction(
                    source=source,
                    label=best["label"],
                    display_name=best["display"],
                    confidence=confidence,
                    top_k=[(self.classes[k]["label"], self.classes[k]["display"], float(row[k])) for k in ranked],
                    is_low_confidence=confidence < threshold,
                    is_unknown=bool(self.detector is not None and self.detector.is_unknown(score)),
                    unknown_score=float(score),
                )
        return results


def _load_backend(bundle, backend: str, num_threads: int | None):
    """(the backend's name, the backend) for a bundle."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}, expected one of: {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = "litert" if bundle.serving_model_path else "keras"
    if backend == "litert":
        if bundle.serving_model_path is None:
            raise BundleError(f"deploy bundle {bundle.path} has no {SERVING_MODEL_FILE}; run `dvc repro` to export it")
        return backend, LiteRTBackend(bundle.serving_model_path, num_threads=num_threads)
    if bundle.model_path is None:
        raise BundleError(f"deploy bundle {bundle.path} has no {MODEL_FILE}; run `dvc repro` to produce it")
    from fish_classifier.preprocessing import load_model  # imports Keras: only for this backend

    return backend, KerasBackend(load_model(bundle.model_path))


def _load_detector(bundle) -> UnknownDetector | None:
    if bundle.unknown_path is None:
        return None
    try:
        return UnknownDetector.load(bundle.unknown_path)
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"{bundle.unknown_path} cannot be read ({exc}); rebuild the bundle with `dvc repro select`") from exc


def _check_widths(bundle, probabilities, embedding, detector) -> None:
    """The model's outputs must fit the bundle's labels and, when it has one, its unknown-photo detector."""
    rebuild = "rebuild the bundle with `dvc repro select`"
    if probabilities.shape[-1] != len(bundle.classes):
        raise BundleError(f"{bundle.path}: the model gives {probabilities.shape[-1]} class probabilities but "
                          f"labels.json lists {len(bundle.classes)} classes; {rebuild}")
    if detector is not None and embedding.shape[-1] != detector.embedding_width:
        raise BundleError(f"{bundle.path}: the unknown-photo detector was fitted on embeddings of width "
                          f"{detector.embedding_width} but the model gives {embedding.shape[-1]}; {rebuild}")


def _is_image(item) -> bool:
    return isinstance(item, (str, os.PathLike, bytes, bytearray, Image.Image)) or hasattr(item, "read")


def _as_list(images) -> list:
    if _is_image(images):
        return [images]
    images = list(images)
    for image in images:
        if not _is_image(image):
            raise TypeError(f"expected image paths, bytes, file-likes or PIL images, got {type(image).__name__}")
    return images


def _source_name(image, index: int) -> str:
    if isinstance(image, (str, os.PathLike)):
        return str(Path(image))
    name = getattr(image, "name", None) or getattr(image, "filename", None)
    return str(name) if name else f"image {index + 1}"


def _failed(source: str, message: str) -> Prediction:
    return Prediction(source=source, label=None, display_name=None, confidence=math.nan, error=message)
