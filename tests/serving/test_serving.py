import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from support import REPO_ROOT
from support.fixtures_models import CLASSES, make_bundle, tinted_image, trained_tiny_model

from fish_classifier.images import load_pixels
from fish_classifier.serving.bundle import BundleError, file_sha256, read_bundle
from fish_classifier.serving.bundle_writer import add_file
from fish_classifier.serving.export import (
    PARITY_TOLERANCE,
    ParityError,
    compare_backends,
    evenly_spaced,
    export_for_serving,
    export_litert,
)
from fish_classifier.serving.inference import (
    CLASS_MAPS,
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

LABELS = [c["label"] for c in CLASSES]


def probe_images(count: int = 12) -> list:
    return [tinted_image(LABELS[i % len(LABELS)], seed=100 + i) for i in range(count)]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny bundle with both models, and the parity report of its export."""
    folder = make_bundle(tmp_path_factory.mktemp("serving") / "deploy", temperature=2.0, threshold=0.5)
    return Path(folder), export_for_serving(folder, probe_images())


@pytest.fixture(scope="module")
def litert_only(exported, tmp_path_factory):
    """The same bundle as the Docker image carries it: model.tflite, labels.json, bundle.json."""
    folder = tmp_path_factory.mktemp("image") / "deploy"
    shutil.copytree(exported[0], folder)
    (folder / "model.keras").unlink()
    return folder


def test_export_matches_the_keras_model_and_is_recorded_in_the_bundle(exported):
    folder, report = exported
    assert report["images"] == 12 and report["labels_agree"] == 12 and report["disagreements"] == []
    assert report["max_abs_diff"] <= PARITY_TOLERANCE
    serving = json.loads((folder / "bundle.json").read_text())["serving"]
    assert serving["file"] == "model.tflite" and serving["runtime"] == "LiteRT"
    assert serving["outputs"] == [PROBABILITIES, CLASS_MAPS, EMBEDDING]
    assert json.loads((folder / "bundle.json").read_text())["files"]["model.tflite"] == file_sha256(folder / "model.tflite")
    assert serving["parity"] == {"images": 12, "max_abs_diff": report["max_abs_diff"],
                                 "embedding_max_abs_diff": report["embedding_max_abs_diff"], "labels_agree": 12}
    assert report["embedding_max_abs_diff"] <= PARITY_TOLERANCE
    assert read_bundle(folder).serving_model_path == folder / "model.tflite"


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


def test_predictor_prefers_the_litert_model_and_agrees_with_keras(exported):
    folder, _ = exported
    litert, keras_predictor = Predictor(folder), Predictor(folder, backend="keras")
    assert (litert.backend, keras_predictor.backend) == ("litert", "keras")
    images = probe_images(9)

    served, reference = litert.predict(images, top_k=3), keras_predictor.predict(images, top_k=3)

    assert [p.label for p in served] == [p.label for p in reference] == [LABELS[i % 3] for i in range(9)]
    for a, b in zip(served, reference):
        assert [label for label, _, _ in a.top_k] == [label for label, _, _ in b.top_k]
        assert [p for _, _, p in a.top_k] == pytest.approx([p for _, _, p in b.top_k], abs=PARITY_TOLERANCE)
    for index in (None, 0, 2):
        cam = litert.class_activation_map(images[0], class_index=index)
        assert cam.shape == (16, 16) and cam.dtype == np.float32
        np.testing.assert_allclose(cam, keras_predictor.class_activation_map(images[0], class_index=index), atol=1e-4)


def test_a_bundle_with_only_the_litert_model_serves(litert_only):
    bundle = read_bundle(litert_only)
    assert bundle.model_path is None and bundle.serving_model_path == litert_only / "model.tflite"
    predictor = Predictor(litert_only)
    [result] = predictor.predict(tinted_image(LABELS[1], seed=7))
    assert predictor.backend == "litert" and result.label == LABELS[1]
    with pytest.raises(BundleError, match=r"has no model.keras; run `dvc repro`"):
        Predictor(litert_only, backend="keras")


def test_the_predictor_imports_and_serves_without_tensorflow_keras_or_pydantic(litert_only):
    # What the Docker image has: no TensorFlow, no Keras, no pydantic (params.yaml's schemas are the pipeline's).
    # Any attempt to import them fails here.
    script = textwrap.dedent(
        f"""
        import sys
        from importlib.abc import MetaPathFinder

        class NoTensorFlow(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {{"tensorflow", "keras", "tf_keras", "pydantic", "pydantic_core"}}:
                    raise ImportError(f"{{name}} is blocked: the serving image does not have it")

        sys.meta_path.insert(0, NoTensorFlow())
        from fish_classifier.serving.predictor import Predictor
        from fish_classifier.images import ImageError

        predictor = Predictor({str(litert_only)!r})
        [result] = predictor.predict({str(REPO_ROOT / "tests" / "no-such-photo.png")!r})
        import numpy as np
        from PIL import Image
        photo = Image.fromarray(np.full((40, 40, 3), (200, 40, 40), dtype=np.uint8))
        [red] = predictor.predict(photo)
        cam = predictor.class_activation_map(photo)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {{"tensorflow", "keras", "pydantic"}})
        print(predictor.backend, red.label, cam.shape, result.error.startswith("no such file"), loaded)
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "litert fish sea_food red_tinted (16, 16) True []"


def test_a_failed_parity_check_leaves_no_serving_model(tmp_path):
    folder = Path(make_bundle(tmp_path / "deploy"))
    with pytest.raises(ParityError, match=r"differs from the Keras model on 3 images: largest probability difference"):
        export_for_serving(folder, probe_images(3), tolerance=-1.0)  # no export can pass a negative tolerance
    assert not (folder / "model.tflite").exists()
    assert "serving" not in json.loads((folder / "bundle.json").read_text())
    assert Predictor(folder).backend == "keras"


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


def test_export_litert_writes_the_file_atomically(tmp_path):
    path = export_litert(trained_tiny_model(), tmp_path / "model.tflite")
    assert path.stat().st_size > 1000
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


class FixedBackend:
    input_size = 8

    def __init__(self, rows):
        self.rows = np.asarray(rows, dtype=np.float32)

    def __call__(self, pixels):
        return self.rows[: len(pixels)]

    def outputs(self, pixels):
        return {PROBABILITIES: self(pixels), EMBEDDING: 10 * self(pixels)}


def test_compare_backends_reports_the_largest_difference_and_the_images_that_disagree():
    reference = FixedBackend([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    candidate = FixedBackend([[0.9, 0.1], [0.45, 0.55], [0.2, 0.8]])
    report = compare_backends(reference, candidate, probe_images(3))
    assert report == {"images": 3, "max_abs_diff": pytest.approx(0.15), "embedding_max_abs_diff": pytest.approx(1.5),
                      "labels_agree": 2, "disagreements": [1]}
    with pytest.raises(ValueError, match="no images"):
        compare_backends(reference, candidate, [])


def test_evenly_spaced_reaches_from_the_first_item_to_the_last():
    assert evenly_spaced(range(10), 4) == [0, 3, 6, 9]
    assert evenly_spaced(["a", "b"], 5) == ["a", "b"]
    with pytest.raises(ValueError, match="count must be at least 1, got 0"):
        evenly_spaced(range(3), 0)


@pytest.mark.slow
def test_parity_on_real_dev_test_photos(tmp_path):
    from support.app_bundles import DEV_ZIP, MOBILENET_WEIGHTS, build_real_photo_bundle, real_photos

    if not DEV_ZIP.is_file() or not MOBILENET_WEIGHTS.is_file():
        pytest.skip(f"real-photo parity needs ../shared ({DEV_ZIP} and {MOBILENET_WEIGHTS.name}); not present")
    labels = ["fish sea_food red_mullet", "fish sea_food shrimp", "fish sea_food trout"]
    bundle = build_real_photo_bundle(tmp_path / "deploy", labels)
    photos = [data for _, data in real_photos(labels, "test", 15)]

    report = export_for_serving(bundle, photos)

    assert report["images"] == 45 and report["labels_agree"] == 45
    assert report["max_abs_diff"] <= PARITY_TOLERANCE


@pytest.mark.slow
def test_a_mirror_averaging_model_exports_with_its_maps_folded_back_to_one_per_photo(tmp_path):
    import keras

    from fish_classifier.model.preprocessing import load_model
    from fish_classifier.model.zoo import build_backbone, build_head, build_model

    backbone, head = build_backbone("mobilenetv2", None, image_size=64), build_head(3, 0.1)
    build_model("mobilenetv2", 3, backbone=backbone, head=head).save(tmp_path / "plain.keras")
    build_model("mobilenetv2", 3, backbone=backbone, head=head, mirror_average=True).save(tmp_path / "mirrored.keras")
    keras.backend.clear_session()
    plain = KerasBackend(load_model(tmp_path / "plain.keras"))
    litert = LiteRTBackend(export_litert(load_model(tmp_path / "mirrored.keras"), tmp_path / "m.tflite"), num_threads=1)

    pixels = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    maps, probs = litert.class_maps_and_probs(pixels)
    plain_maps, plain_probs = plain.class_maps_and_probs(pixels)
    mirror_maps, mirror_probs = plain.class_maps_and_probs(pixels[:, :, ::-1])
    assert maps.shape == plain_maps.shape == (2, 2, 2, 3)
    np.testing.assert_allclose(probs, (plain_probs + mirror_probs) / 2, atol=PARITY_TOLERANCE)
    # The mirror's maps, flipped back, line up with the photo's own before they are averaged.
    np.testing.assert_allclose(maps, (plain_maps + mirror_maps[:, :, ::-1]) / 2, rtol=1e-4, atol=1e-4)
