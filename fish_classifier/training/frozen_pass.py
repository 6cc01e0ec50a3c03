"""The frozen pass of transfer learning: raw pixels through a backbone's preprocessing and its frozen `lower`
part, once per image, in LiteRT (on a CPU) or in Keras."""

import logging
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fish_classifier.data.augment import Augmentation
from fish_classifier.model.zoo import preprocessing_front
from fish_classifier.serving import litert
from fish_classifier.training.pixels import decode_pixels, pixel_dataset
from fish_classifier.training.settings import FROZEN_PASS_RUNTIMES

log = logging.getLogger(__name__)


def frozen_extractor(name: str, lower: keras.Model, size: int) -> keras.Model:
    """The part training runs once per image: raw pixels through the backbone's preprocessing and `lower`."""
    pixels = keras.Input((size, size, 3), name="pixels")
    x = preprocessing_front(name)(pixels)
    return keras.Model(pixels, lower(x, training=False), name=f"{name}_extractor")


class FrozenPass:
    """Runs the frozen `extractor` (preprocessing and `lower`) once over images, in LiteRT or in Keras.

    Both compute the same float32 function (activations agree to about 1e-5 relative). On a
    2-core CPU, decoding included, LiteRT's XNNPACK kernels ran it 4.0x faster than TensorFlow
    for MobileNetV2, 2.3x for EfficientNetB0, 1.5x for InceptionV3, 1.1x for VGG16 and 1.0x for
    ResNet50 (`python bench/frozen_pass.py`), for a one-off export of 4 to 20 s.
    """

    def __init__(self, extractor: keras.Model, runtime: str, batch_size: int, progress: bool = True):
        if runtime not in ("litert", "keras"):
            raise ValueError(f"unknown frozen-pass runtime {runtime!r}, expected litert or keras")
        self.extractor = extractor
        self.runtime = runtime
        self.batch_size = batch_size
        self.progress = progress  # a progress bar per pass
        self.size = int(extractor.input_shape[1])
        self._runner = _litert_runner(extractor) if runtime == "litert" else None

    def __call__(self, paths, split: str, mirror: bool = False, augmentation: Augmentation | None = None,
                 seed: tuple[int, ...] = ()) -> np.ndarray:
        """Activations at the cut, one row per path, in order; `mirror` flips each image left-right first,
        `augmentation` changes it at random (see `pixel_dataset`)."""
        log.info("computing backbone activations for %d %s images (%s)", len(paths), split, self.runtime)
        if self._runner is None:
            images = pixel_dataset(paths, None, self.size, augmentation, seed)
            if mirror:
                images = images.map(tf.image.flip_left_right)
            batches = images.batch(self.batch_size).prefetch(tf.data.AUTOTUNE)
            return self.extractor.predict(batches, verbose=1 if self.progress else 0)
        # One image at a time, decoded and then run, in this thread alone. Decoding threads running beside
        # the interpreter's own threads made the pass take up to twice as long on 2 cores, at random.
        # One image per invoke: XNNPACK gains nothing from batches on a CPU, and the input never re-allocates.
        rows = []
        progress = keras.utils.Progbar(len(paths), unit_name="image", verbose=1 if self.progress else 0)
        for index, path in enumerate(paths):
            pixels = decode_pixels(str(path), self.size, augmentation, (*seed, index))
            if mirror:
                pixels = pixels[:, ::-1]
            rows.append(self._runner(pixels[np.newaxis].astype(np.float32))[0])
            progress.add(1)
        return np.stack(rows) if rows else np.zeros((0, *self.extractor.output_shape[1:]), np.float32)


def choose_frozen_pass_runtime(name: str) -> str:
    """`auto` is LiteRT on a CPU and Keras when a GPU is visible (LiteRT's Python runtime has no GPU path)."""
    if name not in FROZEN_PASS_RUNTIMES:
        raise ValueError(f"unknown train.frozen_pass {name!r}, expected one of: {', '.join(FROZEN_PASS_RUNTIMES)}")
    if name == "auto":
        return "keras" if tf.config.list_logical_devices("GPU") else "litert"
    return name


def _litert_runner(extractor: keras.Model):
    """`extractor` exported to LiteRT, as a function from a (1, S, S, 3) float32 batch to its activations."""
    with tempfile.TemporaryDirectory(prefix="fish-frozen-pass-") as work:
        path = Path(work) / "frozen.tflite"
        extractor.export(str(path), format="litert", verbose=False)
        content = path.read_bytes()
    interpreter = litert.interpreter(content)
    interpreter.allocate_tensors()
    [source] = interpreter.get_input_details()
    [target] = interpreter.get_output_details()

    def run(pixels: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(source["index"], np.ascontiguousarray(pixels, dtype=np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(target["index"])

    return run
