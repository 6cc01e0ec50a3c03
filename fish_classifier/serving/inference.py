"""The serving seam: the two backends that run a deploy model, its output names, and batch inference.

A backend takes a batch of raw RGB pixels (n, S, S, 3) and gives the serving model's outputs:
    probabilities   (n, classes)        the softmax, exactly what the Keras model outputs
    class_maps      (n, h, w, classes)  the last feature map (the input of `pool`) weighed by the
                                        `head` kernel: class k's activation map before ReLU (for a
                                        mirror-averaging model, the mean over the photo and its mirror)
    embedding       (n, features)       the `pool` output, the head's input (for a mirror-averaging
                                        model, the mean over the photo and its mirror): what the
                                        unknown-photo detector (`fish_classifier.serving.unknown`) scores
    imagenet        (n, 1000)           only a bundle exported with an ImageNet branch: the ImageNet head's
                                        probabilities, from layers shared with the deploy model where they
                                        are ImageNet's (`fish_classifier.model.imagenet_branch`)

`LiteRTBackend` runs the bundle's `model.tflite` with nothing but the LiteRT runtime and NumPy, which is all
the Docker image has; `KerasBackend` runs a `.keras` model and imports TensorFlow only when built. The
Predictor (one photo at a time in the app, a folder in the CLI), `evaluate` and `select` (whole splits,
`outputs_for_files`) all run models through here, and decode photos beside the model with `decoded_batches`.
"""

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from fish_classifier.cpus import cpu_threads, usable_cpus
from fish_classifier.images import load_pixels
from fish_classifier.serving import litert
from fish_classifier.serving.bundle import MODEL_FILE, SERVING_MODEL_FILE, BundleError

FEATURE_LAYER = "pool"  # its input is the last convolutional feature map
HEAD_LAYER = "head"  # the final Dense softmax; its kernel weighs the pooled features per class
PROBABILITIES = "probabilities"
CLASS_MAPS = "class_maps"
EMBEDDING = "embedding"
IMAGENET = "imagenet"  # only with an ImageNet branch (`serving_model(model, rewired)`): its 1000 probabilities
OUTPUTS = (PROBABILITIES, CLASS_MAPS, EMBEDDING)
BACKENDS = ("auto", "litert", "keras")  # auto: LiteRT when the bundle has model.tflite, else Keras


def serving_model(model, rewired=None):
    """`model` with the serving outputs, as a Keras model sharing its layers and weights.

    The class maps are a 1x1 convolution with the head's kernel: the same sum over channels
    that the head applies after pooling, done at every position of the feature map. `rewired`: `model`'s graph
    called anew with an ImageNet branch (`fish_classifier.model.imagenet_branch.with_imagenet_branch`), whose
    ImageNet probabilities become a fourth output, `imagenet`.
    """
    import keras

    from fish_classifier.model.preprocessing import MirrorMean  # Keras layers: only for the Keras backend

    if rewired is None:
        feature_map, pooled = model.get_layer(FEATURE_LAYER).input, model.get_layer(FEATURE_LAYER).output
        pixels, probabilities, extra = model.inputs, model.output, {}
    else:
        pixels, feature_map, pooled, probabilities, extra = rewired
    kernel = np.asarray(model.get_layer(HEAD_LAYER).kernel, dtype=np.float32)
    mirrored = any(isinstance(layer, MirrorMean) for layer in model.layers)
    weigh = keras.layers.Conv2D(kernel.shape[1], 1, use_bias=False, dtype="float32",
                                name=f"{CLASS_MAPS}_both" if mirrored else CLASS_MAPS)
    class_maps = weigh(feature_map)
    weigh.set_weights([kernel[np.newaxis, np.newaxis]])
    if mirrored:  # a mirror-averaging model: each photo's maps, and its mirror's flipped back, averaged
        class_maps = MirrorMean(maps=True, name=CLASS_MAPS)(class_maps)
        embedding = MirrorMean(name=EMBEDDING)(pooled)
        extra = {name: MirrorMean(name=name)(tensor) for name, tensor in extra.items()}
    else:  # named like the other outputs, whatever the model calls its pooling layer's tensor
        embedding = keras.layers.Identity(name=EMBEDDING)(pooled)
        extra = {name: keras.layers.Identity(name=name)(tensor) for name, tensor in extra.items()}
    outputs = {PROBABILITIES: probabilities, CLASS_MAPS: class_maps, EMBEDDING: embedding, **extra}
    return keras.Model(pixels, outputs, name=f"{model.name}_serving")


class KerasBackend:
    """Runs a project `.keras` model on batches of raw RGB pixels.

    A compiled graph called on the whole batch, not `model.predict` per image,
    keeps a single photo well under 30 ms on a laptop CPU. Another serving
    format only needs a class with the same `__call__` and `class_maps_and_probs`
    (see `LiteRTBackend` below).
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


class LiteRTBackend:
    """Runs a `model.tflite` on raw RGB pixels with LiteRT's default XNNPACK CPU delegate.

    Same interface as `KerasBackend`. One image per invoke: the input keeps its shape, so
    nothing is re-allocated between calls, and a whole batch per invoke is slower under XNNPACK
    on a CPU, for the same outputs (the MobileNetV2 bundle at 224 px on 2 cores: about 20% fewer
    photos/s in batches of 32, 5% in pairs; `bench/batch_throughput.py` measures it again).
    """

    def __init__(self, path, *, num_threads: int | None = None):
        self.path = Path(path)
        self.num_threads = num_threads or cpu_threads()
        try:
            interpreter = litert.interpreter(self.path, self.num_threads)
            signatures = interpreter.get_signature_list()
        except (ValueError, RuntimeError) as exc:  # an empty, truncated or foreign file
            raise BundleError(f"{self.path} cannot be loaded by LiteRT ({' '.join(str(exc).split())}); "
                              "rebuild the bundle with `dvc repro select`") from exc
        if len(signatures) != 1:
            raise BundleError(f"{self.path}: expected one signature, found {sorted(signatures) or 'none'}")
        [(key, signature)] = signatures.items()
        missing = set(OUTPUTS) - set(signature["outputs"])
        if missing or len(signature["inputs"]) != 1:
            raise BundleError(
                f"{self.path}: expected one input and outputs {', '.join(OUTPUTS)}; found inputs "
                f"{signature['inputs']} and outputs {signature['outputs']}; run `dvc repro` to export it again"
            )
        self._runner = interpreter.get_signature_runner(key)
        self._input = signature["inputs"][0]
        self.output_names = tuple(name for name in (*OUTPUTS, IMAGENET) if name in signature["outputs"])
        shape = self._runner.get_input_details()[self._input]["shape"]
        self.input_size = int(shape[1])
        # An interpreter is not thread-safe, and Streamlit serves each browser session on its own thread.
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Softmax probabilities (n, classes) for uint8 or float pixels (n, S, S, 3)."""
        return self._run(batch)[PROBABILITIES]

    def class_maps_and_probs(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class maps (n, h, w, classes), probabilities (n, classes))."""
        outputs = self._run(batch)
        return outputs[CLASS_MAPS], outputs[PROBABILITIES]

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The serving outputs, by name (see the module's docstring): three, four with an ImageNet branch."""
        return self._run(batch)

    def _run(self, batch) -> dict[str, np.ndarray]:
        batch = np.asarray(batch, dtype=np.float32)
        results = []
        with self._lock:
            for image in batch:
                results.append(self._runner(**{self._input: image[np.newaxis]}))
        return {name: np.concatenate([r[name] for r in results]) for name in self.output_names}


def load_backend(bundle, backend: str, num_threads: int | None):
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
    from fish_classifier.model.preprocessing import load_model  # imports Keras: only for this backend

    return backend, KerasBackend(load_model(bundle.model_path))


def probabilities_for_files(backend, paths, *, batch_size: int, desc: str = "images") -> tuple[np.ndarray, float]:
    """Run `backend` over image files in batches; returns (probabilities, seconds spent in the model)."""
    return _over_files(backend, backend, paths, batch_size=batch_size, desc=desc)


def outputs_for_files(backend, paths, *, batch_size: int, desc: str = "images") -> dict[str, np.ndarray]:
    """The serving model's probabilities, embedding and, with an ImageNet branch, ImageNet probabilities (what the
    unknown-photo detector scores) per image file (or image already in memory: anything `images.load_pixels` reads)."""

    def run(batch):
        outputs = backend.outputs(batch)
        return {name: outputs[name] for name in (PROBABILITIES, EMBEDDING, IMAGENET) if name in outputs}

    return _over_files(backend, run, paths, batch_size=batch_size, desc=desc)[0]


def _over_files(backend, run, paths, *, batch_size: int, desc: str) -> tuple[np.ndarray, float]:
    """`run` over image files in batches at `backend`'s input size; returns (its outputs, seconds spent in it).
    `run` returns an array, or a dict of arrays (concatenated name by name).

    Threads decode the next batch while the model runs on this one (`decoded_batches`). A
    warm-up call before timing keeps graph building out of the measured speed.
    """
    from tqdm import tqdm

    paths = [str(p) if isinstance(p, os.PathLike) else p for p in paths]  # a file, or an image in memory
    if not paths:
        raise ValueError("no images to predict")
    size = backend.input_size
    batches = decoded_batches(paths, lambda path: load_pixels(path, size), batch_size=batch_size, threads=usable_cpus())
    outputs, seconds = [], 0.0
    with tqdm(total=len(paths), desc=desc, unit="img") as bar:
        for i, pixels in enumerate(batches):
            batch = np.stack(pixels)
            if i == 0:
                run(batch)
            start = time.perf_counter()
            outputs.append(run(batch))
            seconds += time.perf_counter() - start
            bar.update(len(batch))
    if isinstance(outputs[0], dict):
        return {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}, seconds
    return np.concatenate(outputs), seconds


def decoded_batches(items: list, decode, *, batch_size: int, threads: int) -> Iterator[list]:
    """`[decode(item) for item in batch]` for each batch of `batch_size` items, in order.

    With `threads` of 1 or more, that many threads decode the next batch while the caller works
    on this one (Pillow and LiteRT let go of the GIL while they work); with 0, each batch is
    decoded on the calling thread when it is asked for. An exception from `decode` is raised
    when its batch is asked for.
    """
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    if threads < 1:
        yield from ([decode(item) for item in batch] for batch in batches)
        return
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode")
    try:
        upcoming = [pool.submit(decode, item) for item in batches[0]] if batches else []
        for i in range(len(batches)):
            current = upcoming
            if i + 1 < len(batches):
                upcoming = [pool.submit(decode, item) for item in batches[i + 1]]
            yield [future.result() for future in current]
    finally:  # also when the caller stops early: drop the decoding nobody will use
        pool.shutdown(cancel_futures=True)
