"""The one inference path: a `Predictor` loads a deploy bundle once and classifies images.

The app, the batch CLI and the tests all go through it. It reads images with
`fish_classifier.images.load_pixels`, the very function training and evaluation
use, and it never imports training code.

It runs the bundle's `model.tflite` with LiteRT when the bundle has one, else its
`model.keras` (the backends are in `fish_classifier.serving.inference`). Importing this module needs
neither TensorFlow nor Keras: only the Keras backend imports them, so the Docker image can leave them out.
"""

import functools
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fish_classifier.cpus import usable_cpus
from fish_classifier.images import ImageError, load_pixels, no_content, open_rgb
from fish_classifier.serving.bundle import DEFAULT_BUNDLE_DIR, SERVING_MODEL_FILE, BundleError, read_bundle
from fish_classifier.serving.bundle_schema import apply_temperature
from fish_classifier.serving.inference import (
    EMBEDDING,
    IMAGENET,
    PROBABILITIES,
    decoded_batches,
    load_backend,
)
from fish_classifier.serving.prediction_row import Prediction, ranked
from fish_classifier.serving.unknown import UnknownDetector


@dataclass
class Timings:
    """Where `Predictor.iter_predict` spent its time, in seconds, added up over the photos it was given.

    `decode` and `resize` are the CPU time of decoding and resizing, on threads beside the model when the
    photos are paths or bytes. On the calling thread, wall-clock: `waiting` for decoded photos, the
    `model`'s runs, and `ranking` (calibration, the unknown-photo check and the top-k).
    """

    photos: int = 0
    decode_threads: int = 0  # 0: the photos were decoded on the calling thread
    decode: float = 0.0
    resize: float = 0.0
    waiting: float = 0.0
    model: float = 0.0
    ranking: float = 0.0


class Predictor:
    """Classifies fish photos with a deploy bundle; see `predict` (`iter_predict` for many) and `class_activation_map`."""

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
        self.classes = bundle.classes
        self.model_name = bundle.model_name
        self.input_size = bundle.input_size
        self.temperature = bundle.temperature
        self.threshold = bundle.threshold
        self.top_k = bundle.top_k
        self.batch_size = batch_size
        self.backend, self._backend = load_backend(bundle, backend, num_threads)
        if self._backend.input_size != self.input_size:
            raise BundleError(
                f"{bundle.path}: bundle.json says input size {self.input_size} but the model takes "
                f"{self._backend.input_size}; run `dvc repro` to rebuild the bundle"
            )
        self.detector = _load_detector(bundle)
        self.doubt = bundle.spec.catch_all_doubt  # when a catch-all answer is flagged low-confidence
        # Build the graph now (about a second), so the first photo a user sends is as fast as the rest;
        # its outputs show whether the model, the labels and the detector were made for each other.
        blank = np.zeros((1, self.input_size, self.input_size, 3), dtype=np.float32)
        if self.detector is None and self.doubt is None:
            _check_widths(bundle, self._backend(blank), None, None)
            return
        outputs = self._backend.outputs(blank)
        _check_widths(bundle, outputs[PROBABILITIES], outputs.get(EMBEDDING), self.detector)
        readers = [("the unknown-photo detector scores", self.detector is not None and self.detector.needs_imagenet),
                   ("catch_all_doubt reads", self.doubt is not None)]
        for reader, needs_branch in readers:
            if needs_branch and IMAGENET not in outputs:
                raise BundleError(f"{bundle.path}: {reader} the ImageNet branch, which only {SERVING_MODEL_FILE} "
                                  f"has, and the {self.backend} backend runs no such branch; serve it with the litert "
                                  "backend, or rebuild the bundle with `dvc repro select`")
        if self.detector is not None:
            self.detector.score_outputs(outputs)

    def predict(self, images, top_k: int | None = None, threshold: float | None = None) -> list[Prediction]:
        """One Prediction per image, in input order; an unreadable image gets `error` set instead of a label.

        `images`: paths, bytes, file-likes or PIL images (or a single one of those).
        `top_k` and `threshold` override the bundle's (select.top_k, and the low-confidence threshold, from 0 to 1).
        """
        return list(self.iter_predict(images, top_k, threshold))

    def iter_predict(self, images, top_k: int | None = None, threshold: float | None = None, *,
                     timings: Timings | None = None) -> Iterator[Prediction]:
        """`predict`, yielding each batch's Predictions as soon as they are ready, and adding where the time
        went to `timings`. Paths and bytes are decoded on threads, the next batch while the model runs on this one.
        """
        images = _as_list(images)
        top_k = self.top_k if top_k is None else top_k
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        top_k = min(top_k, len(self.classes))
        threshold = self.threshold if threshold is None else _checked_threshold(threshold)
        return self._predictions(images, top_k, threshold, Timings() if timings is None else timings)

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

    def _predictions(self, images: list, top_k: int, threshold: float, timings: Timings) -> Iterator[Prediction]:
        # A file-like or a PIL image is not thread-safe, and one list may hold it twice: such a list is
        # decoded on this thread, as one photo is (threads would only add their start-up to it).
        on_threads = len(images) > 1 and all(isinstance(image, (str, os.PathLike, bytes, bytearray)) for image in images)
        threads = usable_cpus() if on_threads else 0
        timings.decode_threads = max(timings.decode_threads, threads)
        batches = decoded_batches(images, functools.partial(_decoded, size=self.input_size),
                                  batch_size=self.batch_size, threads=threads)
        offset, asked = 0, time.perf_counter()
        for decoded in batches:
            timings.waiting += time.perf_counter() - asked
            yield from self._predict_batch(images[offset : offset + len(decoded)], decoded, offset, top_k, threshold,
                                           timings)
            offset, asked = offset + len(decoded), time.perf_counter()

    def _predict_batch(self, images, decoded, offset: int, top_k: int, threshold: float,
                       timings: Timings) -> list[Prediction]:
        results: list[Prediction | None] = [None] * len(images)
        readable, pixels = [], []
        for i, (image, (photo, error, empty, decode_s, resize_s)) in enumerate(zip(images, decoded)):
            source = _source_name(image, offset + i)
            timings.decode += decode_s
            timings.resize += resize_s
            if error is None:
                pixels.append(photo)
                readable.append((i, source, empty))
            else:
                results[i] = _failed(source, error)
        timings.photos += len(images)
        if pixels:
            start = time.perf_counter()
            if self.detector is None and self.doubt is None:
                probs, outputs = self._backend(np.stack(pixels)), None
            else:
                outputs = self._backend.outputs(np.stack(pixels))
                probs = outputs[PROBABILITIES]
            ranking = time.perf_counter()
            timings.model += ranking - start
            scores = (np.full(len(pixels), math.nan) if self.detector is None
                      else self.detector.score_outputs(outputs))
            probs = apply_temperature(probs, self.temperature)
            doubted = (np.zeros(len(pixels), dtype=bool) if self.doubt is None else self.doubt.doubts(
                [self.classes[k]["label"] for k in probs.argmax(axis=1)], outputs[IMAGENET]))
            for (i, source, empty), row, score, doubt in zip(readable, probs, scores, doubted):
                prediction = ranked(source, row, self.classes, top_k, threshold)
                prediction.doubted = bool(doubt)
                prediction.is_low_confidence = prediction.is_low_confidence or prediction.doubted
                prediction.is_unknown = empty is not None or bool(self.detector is not None
                                                                  and self.detector.is_unknown(score))
                prediction.unknown_score, prediction.unknown_reason = float(score), empty
                results[i] = prediction
            timings.ranking += time.perf_counter() - ranking
        return results


def _decoded(image, size: int) -> tuple[np.ndarray | None, str | None, str | None, float, float]:
    """(pixels, None, why it shows no fish or None) or (None, why it is unreadable, None) for one image, then
    the CPU seconds spent decoding and resizing it (CPU, not wall-clock: a decoding thread waits whenever the
    model has the cores)."""
    start = time.thread_time()
    try:
        photo = open_rgb(image, size)
        decoded = time.thread_time()
        if 0 in photo.size:  # Pillow makes such an image, and would resize its nothing into a black square
            width, height = photo.size
            return None, f"image is {width}x{height} pixels: nothing to classify", None, decoded - start, 0.0
        # load_pixels(image, size) in its two steps, timed apart (tests/test_images.py: the same pixels)
        pixels = load_pixels(photo, size)
        return pixels, None, no_content(photo.size, pixels), decoded - start, time.thread_time() - decoded
    except ImageError as exc:
        error = str(exc)
    except OSError as exc:
        error = f"cannot read the file ({exc.strerror or exc})"
    return None, error, None, time.thread_time() - start, 0.0


def _checked_threshold(threshold) -> float:
    """`threshold` as a float, refused with a ValueError naming it unless it is a number from 0 to 1."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number between 0 and 1, got {threshold!r}") from None
    if not 0 <= value <= 1:  # NaN fails this comparison too
        raise ValueError(f"threshold must be between 0 and 1, got {threshold!r}")
    return value


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
