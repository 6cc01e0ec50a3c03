"""The LiteRT export: the deploy model as `model.tflite`, checked against the Keras model before it ships.

`export_for_serving` writes the serving model (`fish_classifier.serving.inference.serving_model`: probabilities,
class maps and the embedding) as float32 LiteRT with no quantisation, and refuses an export whose
probabilities or embeddings differ from the Keras model's by more than PARITY_TOLERANCE, or whose top label
differs, on the images it is given.

Exporting needs TensorFlow, so the Docker image leaves this module out; it runs the export with
`fish_classifier.serving.inference.LiteRTBackend`, which needs only the LiteRT runtime and NumPy.
"""

import math
from pathlib import Path

import numpy as np

from fish_classifier.images import load_pixels
from fish_classifier.serving.bundle import SERVING_MODEL_FILE, BundleError, read_bundle
from fish_classifier.serving.bundle_writer import add_file
from fish_classifier.serving.inference import (
    EMBEDDING,
    IMAGENET,
    OUTPUTS,
    PROBABILITIES,
    KerasBackend,
    LiteRTBackend,
    serving_model,
)

PARITY_TOLERANCE = 1e-4  # largest allowed |p_litert - p_keras| on any image and class


class ParityError(RuntimeError):
    """The LiteRT export does not give the Keras model's answers."""


def export_litert(model, path, imagenet=None) -> Path:
    """Write `serving_model(model)` as a float32 LiteRT flatbuffer at `path`; with `imagenet` (the backbone's ImageNet
    model with its head), with an ImageNet branch sharing `model`'s ImageNet layers (`with_imagenet_branch`)."""
    path = Path(path)
    partial = path.with_name(f".partial-{path.name}")  # Keras insists on the .tflite suffix
    rewired = None
    if imagenet is not None:
        from fish_classifier.model.imagenet_branch import with_imagenet_branch

        rewired = with_imagenet_branch(model, imagenet)
    serving_model(model, rewired).export(str(partial), format="litert", verbose=False)
    partial.replace(path)  # never leave a half-written model where the Predictor would pick it up
    return path


def compare_backends(reference, candidate, images) -> dict:
    """How closely `candidate` reproduces `reference` on `images` (paths, bytes or PIL images).

    Returns images, max_abs_diff (of the probabilities), embedding_max_abs_diff, labels_agree (how many
    top labels match) and disagreements (the indices of the images whose top label differs); with an `imagenet`
    output on both, imagenet_max_abs_diff too.
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
    names = [PROBABILITIES, EMBEDDING] + [IMAGENET] * (IMAGENET in expected[0] and IMAGENET in got[0])
    expected, got = ({name: np.concatenate([o[name] for o in outputs]) for name in names}
                     for outputs in (expected, got))
    largest = {name: float(np.abs(expected[name] - got[name]).max()) for name in names}
    differ = np.flatnonzero(expected[PROBABILITIES].argmax(axis=1) != got[PROBABILITIES].argmax(axis=1))
    return {
        "images": len(images),
        "max_abs_diff": largest[PROBABILITIES],
        "embedding_max_abs_diff": largest[EMBEDDING],
        "labels_agree": len(images) - len(differ),
        "disagreements": differ.tolist(),
        **({"imagenet_max_abs_diff": largest[IMAGENET]} if IMAGENET in largest else {}),
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


def export_for_serving(bundle_dir, probe_images, *, imagenet=None, tolerance: float = PARITY_TOLERANCE) -> dict:
    """Add `model.tflite` to a deploy bundle, after checking it against the bundle's Keras model.

    `probe_images`: the images the two must agree on (the select stage passes test images). `imagenet`: the
    backbone's ImageNet model with its head, to export an ImageNet branch (`serving_model`); its output is checked
    against that model run on its own, so a branch that shared the wrong layers would not ship.
    Records the export and its parity in bundle.json under "serving"; returns the parity report.
    Raises ParityError, leaving no `model.tflite` behind, when they disagree.
    """
    from fish_classifier.model.preprocessing import load_model

    bundle = read_bundle(bundle_dir, finished=False)  # it may promise the model.tflite this adds
    if bundle.model_path is None:
        raise BundleError(f"deploy bundle {bundle.path} has no Keras model to export")
    model = load_model(bundle.model_path)
    path = export_litert(model, bundle.path / SERVING_MODEL_FILE, imagenet)
    report = compare_backends(_Reference(model, imagenet), LiteRTBackend(path), probe_images)
    largest = max(report["max_abs_diff"], report["embedding_max_abs_diff"], report.get("imagenet_max_abs_diff", 0.0))
    branch_missing = imagenet is not None and "imagenet_max_abs_diff" not in report
    if largest > tolerance or report["disagreements"] or branch_missing:
        path.unlink()
        raise ParityError(
            f"the LiteRT export differs from the Keras model on {report['images']} images: largest probability "
            f"difference {report['max_abs_diff']:.2e}, largest embedding difference "
            f"{report['embedding_max_abs_diff']:.2e}, largest ImageNet probability difference "
            f"{report.get('imagenet_max_abs_diff', math.nan):.2e} (allowed {tolerance:.0e}), top label differs on "
            f"images {report['disagreements'] or 'none'}"
        )
    parity = ("images", "max_abs_diff", "embedding_max_abs_diff", "imagenet_max_abs_diff", "labels_agree")
    add_file(
        bundle.path,
        SERVING_MODEL_FILE,
        serving={
            "file": SERVING_MODEL_FILE,
            "runtime": "LiteRT",
            "outputs": list(OUTPUTS) + [IMAGENET] * (imagenet is not None),
            "parity": {key: report[key] for key in parity if key in report},
        },
    )
    return report


class _Reference:
    """What the export must reproduce: the Keras deploy model's outputs and, given `imagenet`, that ImageNet model's
    probabilities run on its own (after the deploy model's preprocessing, averaged with the mirror image's when the
    deploy model averages so)."""

    def __init__(self, model, imagenet=None):
        import keras

        from fish_classifier.model.preprocessing import MirrorMean, MirrorPair

        self.deploy = KerasBackend(model)
        self.input_size = self.deploy.input_size
        self.imagenet = None
        if imagenet is not None:
            pixels = keras.Input(model.input_shape[1:])
            mirrored = any(isinstance(layer, MirrorMean) for layer in model.layers)
            x = model.get_layer("preprocess")(MirrorPair()(pixels) if mirrored else pixels)
            x = imagenet(x)
            self.imagenet = keras.Model(pixels, MirrorMean()(x) if mirrored else x)

    def outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.deploy.outputs(batch)
        if self.imagenet is not None:
            outputs[IMAGENET] = np.asarray(self.imagenet(np.asarray(batch, np.float32), training=False), np.float32)
        return outputs
