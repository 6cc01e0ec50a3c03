"""The serving model: the deploy model exported to LiteRT (`model.tflite`), run without TensorFlow.

The export has three named outputs:
    probabilities   (n, classes)        the softmax, exactly what the Keras model outputs
    class_maps      (n, h, w, classes)  the last feature map (the input of `pool`) weighed by the
                                        `head` kernel: class k's activation map before ReLU (for a
                                        mirror-averaging model, the mean over the photo and its mirror)
    embedding       (n, features)       the `pool` output, the head's input (for a mirror-averaging
                                        model, the mean over the photo and its mirror): what the
                                        unknown-photo detector (`fish_classifier.unknown`) scores

so the app's heatmap and unknown-photo check need nothing but the LiteRT runtime. It is float32 with no quantisation:
`export_for_serving` refuses an export whose probabilities differ from the Keras model's by more
than PARITY_TOLERANCE, or whose top label differs, on the images it is given.

Exporting needs TensorFlow; running (`LiteRTBackend`) needs only `ai-edge-litert` and NumPy,
which is all the Docker image has.
"""

import os
import threading
from pathlib import Path

import numpy as np

from fish_classifier.bundle import SERVING_MODEL_FILE, BundleError, add_file, read_bundle
from fish_classifier.images import load_pixels

FEATURE_LAYER = "pool"  # its input is the last convolutional feature map
HEAD_LAYER = "head"  # the final Dense softmax; its kernel weighs the pooled features per class
PROBABILITIES = "probabilities"
CLASS_MAPS = "class_maps"
EMBEDDING = "embedding"
OUTPUTS = (PROBABILITIES, CLASS_MAPS, EMBEDDING)
PARITY_TOLERANCE = 1e-4  # largest allowed |p_litert - p_keras| on any image and class


class ParityError(RuntimeError):
    """The LiteRT export does not give the Keras model's answers."""


def serving_model(model):
    """`model` with the three serving outputs, as a Keras model sharing its layers and weights.

    The class maps are a 1x1 convolution with the head's kernel: the same sum over channels
    that the head applies after pooling, done at every position of the feature map.
    """
    import keras

    from fish_classifier.preprocessing import MirrorMean

    kernel = np.asarray(model.get_layer(HEAD_LAYER).kernel, dtype=np.float32)
    mirrored = any(isinstance(layer, MirrorMean) for layer in model.layers)
    weigh = keras.layers.Conv2D(kernel.shape[1], 1, use_bias=False, dtype="float32",
                                name=f"{CLASS_MAPS}_both" if mirrored else CLASS_MAPS)
    class_maps = weigh(model.get_layer(FEATURE_LAYER).input)
    weigh.set_weights([kernel[np.newaxis, np.newaxis]])
    pooled = model.get_layer(FEATURE_LAYER).output
    if mirrored:  # a mirror-averaging model: each photo's maps, and its mirror's flipped back, averaged
        class_maps = MirrorMean(maps=True, name=CLASS_MAPS)(class_maps)
        embedding = MirrorMean(name=EMBEDDING)(pooled)
    else:  # named like the other outputs, whatever the model calls its pooling layer's tensor
        embedding = keras.layers.Identity(name=EMBEDDING)(pooled)
    outputs = {PROBABILITIES: model.output, CLASS_MAPS: class_maps, EMBEDDING: embedding}
    return keras.Model(model.inputs, outputs, name=f"{model.name}_serving")


def export_litert(model, path) -> Path:
    """Write `serving_model(model)` as a float32 LiteRT flatbuffer at `path`."""
    path = Path(path)
    partial = path.with_name(f".partial-{path.name}")  # Keras insists on the .tflite suffix
    serving_model(model).export(str(partial), format="litert", verbose=False)
    partial.replace(path)  # never leave a half-written model where the Predictor would pick it up
    return path


class LiteRTBackend:
    """Runs a `model.tflite` on raw RGB pixels with LiteRT's default XNNPACK CPU delegate.

    Same interface as `fish_classifier.predictor.KerasBackend`. One image per invoke: the input
    keeps its shape, so nothing is re-allocated between calls, and XNNPACK gains little from
    batching on a CPU.
    """

    def __init__(self, path, *, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        self.num_threads = num_threads or usable_cpus()
        try:
            interpreter = Interpreter(model_path=str(self.path), num_threads=self.num_threads)
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
        """All three serving outputs, by name (see the module's docstring)."""
        return self._run(batch)

    def _run(self, batch) -> dict[str, np.ndarray]:
        batch = np.asarray(batch, dtype=np.float32)
        results = []
        with self._lock:
            for image in batch:
                results.append(self._runner(**{self._input: image[np.newaxis]}))
        return {name: np.concatenate([r[name] for r in results]) for name in OUTPUTS}


def usable_cpus() -> int:
    """CPUs this process may run on (a container's cpuset, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def compare_backends(reference, candidate, images) -> dict:
    """How closely `candidate` reproduces `reference` on `images` (paths, bytes or PIL images).

    Returns images, max_abs_diff (of the probabilities), embedding_max_abs_diff, labels_agree (how many
    top labels match) and disagreements (the indices of the images whose top label differs).
    """
    images = list(images)
    if not images:
        raise ValueError("no images to compare the backends on")
    if reference.input_size != candidate.input_size:
        raise ValueError(f"input sizes differ: {reference.input_size} and {candidate.input_size}")
    expected, got = [], []
    for start in range(0, len(images), 32):
        pixels = np.stack([load_pixels(image, reference.input_size) for image in images[start : start + 32]])
        expected.append(reference.outputs(pixels))
        got.append(candidate.outputs(pixels))
    expected, got = ({name: np.concatenate([o[name] for o in outputs]) for name in (PROBABILITIES, EMBEDDING)}
                     for outputs in (expected, got))
    largest = {name: float(np.abs(expected[name] - got[name]).max()) for name in (PROBABILITIES, EMBEDDING)}
    differ = np.flatnonzero(expected[PROBABILITIES].argmax(axis=1) != got[PROBABILITIES].argmax(axis=1))
    return {
        "images": len(images),
        "max_abs_diff": largest[PROBABILITIES],
        "embedding_max_abs_diff": largest[EMBEDDING],
        "labels_agree": len(images) - len(differ),
        "disagreements": differ.tolist(),
    }


def evenly_spaced(items, count: int) -> list:
    """`count` of `items` spread evenly from first to last (all of them when there are no more than `count`).

    On a manifest sorted by label this picks images of every class, not the first class's only.
    """
    items = list(items)
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if len(items) <= count:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def export_for_serving(bundle_dir, probe_images, *, tolerance: float = PARITY_TOLERANCE) -> dict:
    """Add `model.tflite` to a deploy bundle, after checking it against the bundle's Keras model.

    `probe_images`: the images the two must agree on (the select stage passes test images).
    Records the export and its parity in bundle.json under "serving"; returns the parity report.
    Raises ParityError, leaving no `model.tflite` behind, when they disagree.
    """
    from fish_classifier.predictor import KerasBackend
    from fish_classifier.preprocessing import load_model

    bundle = read_bundle(bundle_dir)
    if bundle.model_path is None:
        raise BundleError(f"deploy bundle {bundle.path} has no Keras model to export")
    model = load_model(bundle.model_path)
    path = export_litert(model, bundle.path / SERVING_MODEL_FILE)
    report = compare_backends(KerasBackend(model), LiteRTBackend(path), probe_images)
    if max(report["max_abs_diff"], report["embedding_max_abs_diff"]) > tolerance or report["disagreements"]:
        path.unlink()
        raise ParityError(
            f"the LiteRT export differs from the Keras model on {report['images']} images: largest probability "
            f"difference {report['max_abs_diff']:.2e}, largest embedding difference "
            f"{report['embedding_max_abs_diff']:.2e} (allowed {tolerance:.0e}), top label differs on images "
            f"{report['disagreements'] or 'none'}"
        )
    add_file(
        bundle.path,
        SERVING_MODEL_FILE,
        serving={
            "file": SERVING_MODEL_FILE,
            "runtime": "LiteRT",
            "outputs": list(OUTPUTS),
            "parity": {key: report[key] for key in ("images", "max_abs_diff", "embedding_max_abs_diff", "labels_agree")},
        },
    )
    return report
