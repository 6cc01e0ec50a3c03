"""The backends that run a model (Keras, LiteRT), their outputs, and the decoding of photos beside them."""

import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from support.fixtures_models import LABELS, make_bundle, probe_images, trained_tiny_model

from fish_classifier.images import load_pixels
from fish_classifier.serving.bundle import BundleError, read_bundle
from fish_classifier.serving.bundle_writer import add_file
from fish_classifier.serving.export import PARITY_TOLERANCE
from fish_classifier.serving.inference import (
    EMBEDDING,
    OUTPUTS,
    PROBABILITIES,
    KerasBackend,
    LiteRTBackend,
    decoded_batches,
    outputs_for_files,
    probabilities_for_files,
)
from fish_classifier.serving.predictor import Predictor


def test_litert_backend_gives_the_keras_probabilities_and_class_maps(exported):
    keras_backend = KerasBackend(trained_tiny_model())
    litert = LiteRTBackend(exported[0] / "model.tflite", num_threads=1)
    pixels = np.stack([np.asarray(image.resize((32, 32))) for image in probe_images(5)])

    keras_maps, keras_probs = keras_backend.class_maps_and_probs(pixels)
    maps, probs = litert.class_maps_and_probs(pixels)

    assert litert.input_size == 32 and litert.num_threads == 1
    assert probs.shape == (5, 3) and maps.shape == (5, 16, 16, 3)  # the tiny model pools once: 32 -> 16
    np.testing.assert_allclose(probs, keras_probs, atol=PARITY_TOLERANCE)
    np.testing.assert_allclose(litert(pixels), probs)
    # The embedding is the head's input: the pooled features, within the same tolerance as the probabilities.
    embedding, keras_embedding = litert.outputs(pixels)[EMBEDDING], keras_backend.outputs(pixels)[EMBEDDING]
    assert embedding.shape == (5, 8)
    np.testing.assert_allclose(embedding, keras_embedding, atol=PARITY_TOLERANCE)
    model = trained_tiny_model()
    pooled = keras.Model(model.inputs, model.get_layer("pool").output)(pixels.astype(np.float32))
    np.testing.assert_allclose(keras_embedding, np.asarray(pooled), atol=1e-6)
    np.testing.assert_allclose(maps, keras_maps, atol=1e-4 * max(1.0, np.abs(keras_maps).max()))
    # Class map k is the feature map weighed by head column k: its spatial mean is the head's logit
    # for k, so the softmax of the means gives back the probabilities (the head here has a bias).
    means = maps.mean(axis=(1, 2)) + np.asarray(trained_tiny_model().get_layer("head").bias)
    softmax = np.exp(means - means.max(axis=1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(axis=1, keepdims=True), probs, atol=1e-5)


def test_litert_outputs_for_a_batch_equal_each_photos_own(exported):
    from ai_edge_litert.interpreter import Interpreter

    litert = LiteRTBackend(exported[0] / "model.tflite")
    pixels = np.stack([np.asarray(image.resize((32, 32))) for image in probe_images(12)])
    alone = [litert.outputs(pixels[i : i + 1]) for i in range(len(pixels))]
    # The same model with a whole batch per invoke, its input resized to the batch: what LiteRTBackend
    # could do instead, were it faster (bench/batch_throughput.py), giving the same outputs.
    interpreter = Interpreter(model_path=str(exported[0] / "model.tflite"))
    [(key, signature)] = interpreter.get_signature_list().items()
    whole_batch = interpreter.get_signature_runner(key)

    # Batch sizes that change from call to call, as a run's last, partial batch does.
    for start, stop in [(0, 7), (7, 12), (0, 7), (3, 4)]:
        batch = pixels[start:stop]
        for outputs in (litert.outputs(batch), whole_batch(**{signature["inputs"][0]: batch.astype(np.float32)})):
            for name in OUTPUTS:
                expected = np.concatenate([one[name] for one in alone[start:stop]])
                assert outputs[name].shape == expected.shape
                np.testing.assert_allclose(outputs[name], expected, atol=1e-5, err_msg=name)


def test_probabilities_for_files_keep_the_files_order(exported, tmp_path):
    litert = LiteRTBackend(exported[0] / "model.tflite")
    paths = []
    for i, image in enumerate(probe_images(11)):
        paths.append(tmp_path / f"{i:02d}.png")
        image.save(paths[-1])
    expected = litert(np.stack([load_pixels(path, litert.input_size) for path in paths]))

    probabilities, seconds = probabilities_for_files(litert, paths, batch_size=4)
    outputs = outputs_for_files(litert, paths, batch_size=3)

    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    np.testing.assert_allclose(outputs[PROBABILITIES], expected, atol=1e-6)
    assert outputs[EMBEDDING].shape == (11, 8) and seconds > 0
    assert [LABELS[k] for k in probabilities.argmax(axis=1)] == [LABELS[i % 3] for i in range(11)]


def test_outputs_for_images_in_memory_equal_those_for_the_same_images_as_files(exported, tmp_path):
    litert = LiteRTBackend(exported[0] / "model.tflite")
    images = probe_images(5)
    for i, image in enumerate(images):
        image.save(tmp_path / f"{i}.png")
    from_files = outputs_for_files(litert, sorted(tmp_path.glob("*.png")), batch_size=2)
    in_memory = outputs_for_files(litert, images, batch_size=2)
    for name in (PROBABILITIES, EMBEDDING):
        np.testing.assert_array_equal(in_memory[name], from_files[name])


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_decoded_batches_come_in_order_a_batch_at_a_time(threads):
    batches = list(decoded_batches(list(range(10)), lambda item: item * item, batch_size=4, threads=threads))
    assert batches == [[0, 1, 4, 9], [16, 25, 36, 49], [64, 81]]
    assert list(decoded_batches([], str, batch_size=4, threads=threads)) == []


@pytest.mark.parametrize("threads", [0, 2])
def test_a_decoding_error_is_raised_when_its_batch_is_asked_for(threads):
    def decode(item):
        if item == 5:
            raise MemoryError("photo 5")
        return item

    batches = decoded_batches(list(range(8)), decode, batch_size=3, threads=threads)
    assert next(batches) == [0, 1, 2]
    with pytest.raises(MemoryError, match="photo 5"):
        next(batches)


def test_decoding_stops_when_the_caller_stops_asking():
    decoded = []
    batches = decoded_batches(list(range(100)), decoded.append, batch_size=5, threads=2)
    next(batches)
    batches.close()
    # At most the batch taken and the one decoded ahead; the other eighteen never start.
    assert len(decoded) <= 10


def test_backend_choice_is_checked(exported, tmp_path):
    with pytest.raises(ValueError, match=r"unknown backend 'onnx', expected one of: auto, litert, keras"):
        Predictor(exported[0], backend="onnx")
    keras_only = Path(make_bundle(tmp_path / "keras-only"))
    with pytest.raises(BundleError, match=r"has no model.tflite; run `dvc repro` to export it"):
        Predictor(keras_only, backend="litert")
    (keras_only / "model.keras").unlink()
    with pytest.raises(BundleError, match=r"has neither model.tflite nor model.keras; run `dvc repro`"):
        read_bundle(keras_only)


def test_a_tflite_without_the_serving_outputs_is_refused(tmp_path):
    trained_tiny_model().export(str(tmp_path / "plain.tflite"), format="litert", verbose=False)
    with pytest.raises(BundleError, match=r"expected one input and outputs probabilities, class_maps"):
        LiteRTBackend(tmp_path / "plain.tflite")


@pytest.mark.parametrize(
    "damage",
    [lambda model: b"", lambda model: model[: len(model) // 2], lambda model: b"not a model\n" * 100],
    ids=["empty", "truncated", "not a flatbuffer"],
)
def test_a_corrupt_or_empty_tflite_is_refused_at_load_with_how_to_rebuild(exported, tmp_path, damage):
    folder = tmp_path / "deploy"
    shutil.copytree(exported[0], folder)
    (folder / "model.tflite").write_bytes(damage((folder / "model.tflite").read_bytes()))
    add_file(folder, "model.tflite")  # a careless rebuild: the damaged file's hash recorded again
    with pytest.raises(BundleError) as error:
        Predictor(folder)
    message = str(error.value)
    assert message.startswith(f"{folder / 'model.tflite'} cannot be loaded by LiteRT (")
    assert message.endswith("); rebuild the bundle with `dvc repro select`") and "\n" not in message
