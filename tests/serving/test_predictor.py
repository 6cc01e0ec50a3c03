import io
import json
import math
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import REPO_ROOT
from support.app_bundles import text_photo
from support.fixtures_models import CLASSES, IMAGE_SIZE, LABELS, make_bundle, probe_images, tinted_image
from support.synthetic_images import byte_flips, fuzz_originals, noise_image, tiff_without_dimensions

from fish_classifier import images
from fish_classifier.cpus import usable_cpus
from fish_classifier.evaluation.unknown_fit import UnknownSettings, fit_detector, fit_unknown_detector
from fish_classifier.images import load_pixels
from fish_classifier.model.preprocessing import load_model
from fish_classifier.serving import predictor as predictor_module
from fish_classifier.serving.bundle import BundleError, read_bundle
from fish_classifier.serving.bundle_writer import add_file, add_unknown_detector, update_info
from fish_classifier.serving.export import PARITY_TOLERANCE, export_for_serving
from fish_classifier.serving.inference import EMBEDDING, KerasBackend, LiteRTBackend
from fish_classifier.serving.predictor import Prediction, Predictor, Timings
from fish_classifier.serving.unknown import RELATIVE

RED, GREEN, BLUE = "fish sea_food red_tinted", "fish sea_food green_tinted", "fish sea_food blue_tinted"


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    # A high temperature keeps confidences below 1.0, so thresholds around them are testable.
    return Predictor(make_bundle(tmp_path_factory.mktemp("bundle") / "deploy", temperature=8.0, threshold=0.5))


def _png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_exposes_the_bundle_settings(predictor):
    assert predictor.classes == CLASSES
    assert (predictor.model_name, predictor.input_size, predictor.threshold) == ("tiny", 32, 0.5)
    assert predictor.temperature == predictor.bundle.spec.temperature == 8.0


def test_paths_bytes_file_likes_and_pil_images_give_the_same_answer(predictor, tmp_path):
    image = tinted_image(GREEN, seed=3)
    path = tmp_path / "green.png"
    image.save(path)
    upload = io.BytesIO(_png_bytes(image))
    upload.name = "upload.png"

    results = predictor.predict([str(path), path, _png_bytes(image), upload, image])

    assert [r.source for r in results] == [str(path), str(path), "image 3", "upload.png", "image 5"]
    assert {r.label for r in results} == {GREEN}
    assert {r.display_name for r in results} == {"Bass"}
    assert [r.confidence for r in results] == pytest.approx([results[0].confidence] * 5)
    assert all(r.error is None for r in results)


def test_a_single_image_needs_no_list(predictor):
    [result] = predictor.predict(tinted_image(BLUE, seed=4))
    assert result.label == BLUE and result.display_name == "Mullet"


def test_an_unreadable_item_gets_an_error_and_the_others_are_still_predicted(predictor, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    truncated = _png_bytes(tinted_image(RED, seed=5))[:60]

    results = predictor.predict(
        [tinted_image(RED, seed=1), empty, text, truncated, tmp_path / "missing.png", tinted_image(BLUE, seed=2)]
    )

    assert [r.label for r in results] == [RED, None, None, None, None, BLUE]
    assert results[1].error == "file is empty (0 bytes)"
    assert results[2].error == "not a readable image (corrupt, or not one of JPEG, PNG, WEBP, BMP, MPO)"
    assert results[3].error.startswith("image data is corrupt or truncated")
    assert results[4].error.startswith("no such file")
    for failed in results[1:5]:
        assert failed.display_name is None and math.isnan(failed.confidence) and failed.top_k == []
        assert not failed.is_low_confidence
    assert results[0].error is None and results[5].error is None


@pytest.mark.filterwarnings("ignore::UserWarning:PIL.*")  # Pillow's notes on the corrupt EXIF it was fed
def test_corrupted_files_get_error_rows_and_never_stop_the_batch(predictor, tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 256 * 256)  # a flipped header may claim a huge image
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(tiff_without_dimensions())
    corrupted = [data for original in fuzz_originals().values() for data in byte_flips(original, 12, seed=5)]

    results = predictor.predict([tinted_image(RED, seed=1), photo, *corrupted])

    assert len(results) == 2 + len(corrupted)
    assert (results[0].label, results[0].error) == (RED, None)
    assert results[1].error == "not a readable image (corrupt, or not one of JPEG, PNG, WEBP, BMP, MPO)"
    labels = {c["label"] for c in CLASSES}
    for result in results[2:]:
        assert (result.label in labels and result.error is None) or (result.label is None and result.error)
    assert sum(result.error is not None for result in results) > 10


def test_errors_and_predictions_keep_input_order_across_batches(tmp_path):
    small_batches = Predictor(make_bundle(tmp_path / "deploy"), batch_size=2)
    images = [tinted_image(RED, 1), b"junk", tinted_image(GREEN, 2), tinted_image(BLUE, 3), b"", tinted_image(RED, 4)]
    assert [r.label for r in small_batches.predict(images)] == [RED, None, GREEN, BLUE, None, RED]


def _saved(tmp_path, labels, seed: int = 40) -> list:
    paths = []
    for i, label in enumerate(labels):
        paths.append(tmp_path / f"{i:02d}.png")
        tinted_image(label, seed=seed + i).save(paths[-1])
    return paths


def _decoding_threads(monkeypatch) -> list:
    """The threads that decode photos from now on, one entry per photo."""
    threads, decode = [], predictor_module.open_rgb

    def recorded(source, size):
        threads.append(threading.current_thread())
        return decode(source, size)

    monkeypatch.setattr(predictor_module, "open_rgb", recorded)
    return threads


def _assert_same_answer(together: Prediction, alone: Prediction) -> None:
    """A photo's prediction among others is its prediction alone: the batch it came in changes nothing."""
    assert (together.source, together.label, together.error, together.is_unknown) == (
        alone.source, alone.label, alone.error, alone.is_unknown)
    assert [label for label, _, _ in together.top_k] == [label for label, _, _ in alone.top_k]
    assert together.confidence == pytest.approx(alone.confidence, abs=1e-6)
    assert together.unknown_score == pytest.approx(alone.unknown_score, rel=1e-5)


def test_paths_are_decoded_on_threads_and_keep_their_order_and_their_answers(predictor, tmp_path, monkeypatch):
    labels = [RED, GREEN, BLUE, GREEN, RED, BLUE, BLUE, RED, GREEN, RED, GREEN]  # three batches, the last one short
    paths = _saved(tmp_path, labels)
    alone = [predictor.predict(path)[0] for path in paths]
    monkeypatch.setattr(predictor, "batch_size", 4)
    threads, timings = _decoding_threads(monkeypatch), Timings()

    together = list(predictor.iter_predict([*paths[:5], paths[5].read_bytes(), *paths[6:]], timings=timings))

    assert [p.label for p in together] == labels
    for i, (prediction, reference) in enumerate(zip(together, alone)):
        if i == 5:  # given as bytes: named by its place
            assert prediction.source == "image 6"
            prediction.source = reference.source
        _assert_same_answer(prediction, reference)
    assert len(threads) == len(paths) and threading.current_thread() not in threads
    assert timings.decode_threads == usable_cpus() and timings.photos == len(paths)
    assert timings.decode > 0 and timings.resize > 0 and timings.model > 0 and timings.ranking > 0


def test_an_unreadable_file_in_the_middle_of_a_batch_gets_its_error_and_its_neighbours_their_answers(
        predictor, tmp_path, monkeypatch):
    paths = _saved(tmp_path, [RED, GREEN, BLUE, RED, GREEN])
    broken, empty = tmp_path / "broken.jpg", tmp_path / "empty.png"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    empty.write_bytes(b"")
    alone = [predictor.predict(path)[0] for path in paths]
    monkeypatch.setattr(predictor, "batch_size", 6)

    results = predictor.predict([paths[0], paths[1], broken, paths[2], empty, paths[3], tmp_path / "gone.png", paths[4]])

    assert [r.label for r in results] == [RED, GREEN, None, BLUE, None, RED, None, GREEN]
    assert results[2].error == "not a readable image (corrupt, or not one of JPEG, PNG, WEBP, BMP, MPO)"
    assert results[4].error == "file is empty (0 bytes)"
    assert results[6].error.startswith("no such file")
    assert [r.source for r in results[2::2]] == [str(broken), str(empty), str(tmp_path / "gone.png")]
    for result, reference in zip([r for r in results if r.error is None], alone):
        _assert_same_answer(result, reference)


def test_file_likes_and_pil_images_are_decoded_on_the_calling_thread(predictor, tmp_path, monkeypatch):
    [path] = _saved(tmp_path, [BLUE])
    upload = io.BytesIO(_png_bytes(tinted_image(GREEN, seed=2)))
    threads, timings = _decoding_threads(monkeypatch), Timings()

    results = list(predictor.iter_predict([tinted_image(RED, seed=1), upload, path], timings=timings))

    assert [r.label for r in results] == [RED, GREEN, BLUE]
    assert threads == [threading.current_thread()] * 3 and timings.decode_threads == 0


def test_iter_predict_checks_its_arguments_when_called(predictor):
    with pytest.raises(ValueError, match="top_k must be at least 1, got 0"):
        predictor.iter_predict([tinted_image(RED, seed=1)], top_k=0)
    with pytest.raises(TypeError, match="got int"):
        predictor.iter_predict([42])


def test_top_k_is_sorted_and_capped_at_the_number_of_classes(predictor):
    [result] = predictor.predict([tinted_image(RED, seed=6)], top_k=10)
    assert len(result.top_k) == len(CLASSES)
    assert result.top_k[0] == (RED, "Trout", result.confidence)
    probabilities = [p for _, _, p in result.top_k]
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)
    [two] = predictor.predict([tinted_image(RED, seed=6)], top_k=2)
    assert [label for label, _, _ in two.top_k] == [label for label, _, _ in result.top_k[:2]]
    with pytest.raises(ValueError, match="top_k must be at least 1, got 0"):
        predictor.predict([tinted_image(RED, seed=6)], top_k=0)


def test_top_k_defaults_to_the_bundles_select_top_k(predictor, tmp_path):
    two = tmp_path / "two"
    shutil.copytree(predictor.bundle.path, two)
    update_info(two, top_k=2)
    [result] = Predictor(two).predict([tinted_image(RED, seed=6)])
    assert Predictor(two).top_k == 2 and len(result.top_k) == 2
    assert len(predictor.predict([tinted_image(RED, seed=6)])[0].top_k) == min(predictor.top_k, len(CLASSES))


def test_low_confidence_follows_the_bundle_threshold_or_an_override(predictor):
    image = tinted_image(GREEN, seed=8)
    [result] = predictor.predict(image)
    assert 0.5 < result.confidence < 1.0
    assert not result.is_low_confidence
    [strict] = predictor.predict(image, threshold=result.confidence + 1e-6)
    assert strict.is_low_confidence
    [lenient] = predictor.predict(image, threshold=result.confidence)
    assert not lenient.is_low_confidence  # flagged only when strictly below the threshold


@pytest.mark.parametrize(
    ("threshold", "message"),
    [(math.nan, "threshold must be between 0 and 1, got nan"), (5, "threshold must be between 0 and 1, got 5"),
     (-0.1, "threshold must be between 0 and 1, got -0.1"),
     ("high", "threshold must be a number between 0 and 1, got 'high'"),
     ([], "threshold must be a number between 0 and 1, got []")],
)  # fmt: skip
def test_a_threshold_outside_0_to_1_is_refused_naming_it(predictor, threshold, message):
    with pytest.raises(ValueError) as caught:
        predictor.predict([tinted_image(RED, seed=1)], threshold=threshold)
    assert str(caught.value) == message
    with pytest.raises(ValueError, match="between 0 and 1"):
        predictor.iter_predict([tinted_image(RED, seed=1)], threshold=threshold)  # when called, not when iterated


@pytest.mark.parametrize("size", [(0, 0), (0, 7), (7, 0)])
def test_an_image_with_no_pixels_gets_an_error_and_the_others_are_still_predicted(predictor, size):

    empty = Image.new("RGB", size)
    results = predictor.predict([tinted_image(RED, seed=1), empty, tinted_image(BLUE, seed=2)])

    assert [r.label for r in results] == [RED, None, BLUE]
    assert results[1].error == f"image is {size[0]}x{size[1]} pixels: nothing to classify"
    assert math.isnan(results[1].confidence) and results[1].top_k == [] and not results[1].is_low_confidence


def test_an_array_is_not_an_image_the_predictor_takes_even_an_empty_one(predictor):
    with pytest.raises(TypeError, match="got ndarray"):
        predictor.predict([np.zeros((0, 0, 3), np.uint8)])


def test_rejects_inputs_that_are_not_images(predictor):
    with pytest.raises(TypeError, match="got int"):
        predictor.predict([tinted_image(RED, 1), 42])


def test_class_activation_map_is_a_normalised_map_over_the_feature_grid(predictor):
    cam = predictor.class_activation_map(tinted_image(RED, seed=9))
    assert cam.dtype == np.float32
    assert cam.shape == (16, 16)  # the tiny model pools once: 32 -> 16
    assert cam.min() >= 0.0 and cam.max() == pytest.approx(1.0)
    other = predictor.class_activation_map(tinted_image(RED, seed=9), class_index=0)
    assert other.shape == (16, 16) and 0.0 <= other.min() and other.max() <= 1.0
    with pytest.raises(ValueError, match=r"class_index must be in 0..2, got 3"):
        predictor.class_activation_map(tinted_image(RED, seed=9), class_index=3)


def test_prediction_is_a_plain_dataclass():
    prediction = Prediction(source="x", label="a", display_name="A", confidence=0.9)
    assert prediction.top_k == [] and prediction.error is None and not prediction.is_low_confidence


@pytest.mark.parametrize("name, size, grid", [("cnn", 32, 4), ("mobilenetv2", 64, 2)])
def test_works_on_the_zoo_models_including_a_nested_backbone(tmp_path, name, size, grid):
    from fish_classifier.model.zoo import build_model
    from fish_classifier.serving.bundle_writer import write_bundle

    model = build_model(name, len(CLASSES), weights=None, image_size=size)
    model.save(tmp_path / "model.keras")
    write_bundle(tmp_path / "deploy", model_path=tmp_path / "model.keras", classes=CLASSES, model_name=name,
                 temperature=1.0, threshold=0.5, top_k=5, metrics={}, data_hash="x")
    predictor = Predictor(tmp_path / "deploy")

    [result] = predictor.predict(tinted_image(RED, seed=1))
    assert result.error is None and result.label in {c["label"] for c in CLASSES}
    cam = predictor.class_activation_map(tinted_image(RED, seed=1))
    assert cam.shape == (grid, grid) and cam.dtype == np.float32
    assert 0.0 <= cam.min() and cam.max() <= 1.0


def test_an_image_unlike_every_class_is_flagged_unknown_and_keeps_its_label(predictor):
    from support.app_bundles import text_photo

    tinted = [tinted_image(label, seed=300 + i) for i, label in enumerate([RED, GREEN, BLUE] * 3)]
    fish = predictor.predict(tinted)
    [text] = predictor.predict(text_photo("no fish here"))
    assert not any(p.is_unknown for p in fish)
    assert max(p.unknown_score for p in fish) <= predictor.detector.threshold < text.unknown_score
    assert text.is_unknown and text.label in {c["label"] for c in CLASSES}  # flagged, never relabelled


def test_a_bundle_without_a_detector_flags_nothing_and_scores_nan(tmp_path):
    plain = Predictor(make_bundle(tmp_path / "deploy", detector=False))
    [result] = plain.predict(tinted_image(RED, seed=1))
    assert plain.detector is None and result.is_unknown is False and math.isnan(result.unknown_score)


# A careless rebuild: a file of the bundle replaced and its hash recorded again (`add_file`), so only the
# Predictor's own check, on the model's outputs, can see that the parts no longer fit.
REBUILD = "rebuild the bundle with `dvc repro select`"


def test_labels_that_do_not_fit_the_models_outputs_are_refused_at_load(predictor, tmp_path):
    folder = tmp_path / "deploy"
    shutil.copytree(predictor.bundle.path, folder)
    (folder / "labels.json").write_text(json.dumps({"classes": CLASSES[:2]}))
    update_info(folder, num_classes=2)
    add_file(folder, "labels.json")
    with pytest.raises(BundleError) as error:
        Predictor(folder)
    assert str(error.value) == (f"{folder}: the model gives 3 class probabilities but labels.json lists 2 classes; "
                                f"{REBUILD}")


@pytest.mark.parametrize("method", ["knn", "mahalanobis", "energy"])
def test_a_detector_fitted_on_other_embeddings_is_refused_at_load(predictor, tmp_path, method):
    folder = tmp_path / "deploy"
    shutil.copytree(predictor.bundle.path, folder)
    rng = np.random.default_rng(0)
    embeddings, labels = rng.normal(size=(30, 5)), np.repeat(np.arange(len(CLASSES)), 10)  # the model's are 8 wide
    detector = fit_detector(method, embeddings, labels, head_kernel=rng.normal(size=(5, len(CLASSES))),
                            head_bias=np.zeros(len(CLASSES))).with_threshold(1.0)  # unset, it cannot be saved
    add_unknown_detector(folder, detector)
    with pytest.raises(BundleError) as error:
        Predictor(folder)
    assert str(error.value) == (f"{folder}: the unknown-photo detector was fitted on embeddings of width 5 but the "
                                f"model gives 8; {REBUILD}")


def _solid_squares(count: int, size: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    return [Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3))) for _ in range(count)]


@pytest.fixture(scope="module")
def no_detector(tmp_path_factory):
    return Predictor(make_bundle(tmp_path_factory.mktemp("bundle") / "deploy", temperature=8.0, detector=False))


def test_photos_that_show_no_fish_are_unknown_whatever_the_model_says_and_say_why(no_detector):
    # The probe: a 1x1 green PNG came back "Animal fish" at 0.9999, and 1,509 of 2,000 solid 8x8
    # squares were neither unknown nor low-confidence. This bundle has no detector: the rule alone flags them.
    flat = _solid_squares(200, 8, seed=0) + _solid_squares(20, 64, seed=1)
    tiny = [Image.new("RGB", (1, 1), (0, 255, 0)), noise_image((15, 200)), noise_image((1, 3000))]
    fish = tinted_image(RED, seed=5)

    results = no_detector.predict([fish, *flat, *tiny])

    assert no_detector.detector is None
    assert (results[0].is_unknown, results[0].unknown_reason, results[0].label) == (False, None, RED)
    assert all(r.is_unknown and r.error is None for r in results[1:])
    assert all(r.unknown_reason.endswith("under 16 on a side: too small to show a fish") for r in results[1:201])
    assert all("one flat colour" in r.unknown_reason for r in results[201 : 1 + len(flat)])
    assert [r.unknown_reason for r in results[-3:]] == [
        "the photo is 1x1 pixels, under 16 on a side: too small to show a fish",
        "the photo is 15x200 pixels, under 16 on a side: too small to show a fish",
        "the photo is 1x3000 pixels, under 16 on a side: too small to show a fish",
    ]


def test_a_flat_colour_saved_as_a_jpeg_is_still_flat_and_a_textured_photo_is_left_to_the_detector(no_detector):
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (90, 140, 60)).save(buffer, format="JPEG", quality=40)

    flat_jpeg, noise = no_detector.predict([buffer.getvalue(), noise_image((64, 64))])

    assert flat_jpeg.is_unknown and "one flat colour" in flat_jpeg.unknown_reason
    assert (noise.is_unknown, noise.unknown_reason) == (False, None)


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


# A relative (outlier-pool) detector in a deploy bundle serves as the select stage fitted it: saved, hashed,
# loaded by the Predictor, and scored on the LiteRT model's embeddings as on the Keras model's.
def _pixels(images) -> np.ndarray:
    return np.stack([load_pixels(image, IMAGE_SIZE) for image in images]).astype(np.float32)


@pytest.fixture(scope="module")
def relative_bundle(tmp_path_factory):
    folder = Path(make_bundle(tmp_path_factory.mktemp("relative") / "deploy", detector=False))
    export_for_serving(folder, [tinted_image(c["label"], seed=40 + i) for i, c in enumerate(CLASSES)])
    keras = KerasBackend(load_model(folder / "model.keras"))
    labels = np.repeat(np.arange(len(CLASSES)), 30)
    fish = {split: _pixels([tinted_image(CLASSES[k]["label"], seed=seed + i) for i, k in enumerate(labels)])
            for split, seed in (("train", 7000), ("val", 8000))}
    pool = _pixels([text_photo(f"pool photo {i}") for i in range(12)])
    embed = lambda pixels: keras.outputs(pixels)[EMBEDDING]  # noqa: E731
    detector = fit_unknown_detector(UnknownSettings("mahalanobis", 0.5, 1, 0.0, outliers="relative"),
                                    embed(fish["train"]), labels, embed(fish["val"]), outlier_embeddings=embed(pool))
    add_unknown_detector(folder, detector, outliers="relative", outlier_photos=len(pool))
    return folder, detector, keras


def test_the_litert_predictor_gives_the_relative_score_of_the_keras_embeddings(relative_bundle):
    folder, detector, keras = relative_bundle
    photos = [tinted_image(CLASSES[k]["label"], seed=9000 + k) for k in range(len(CLASSES))]
    photos += [text_photo("a photo of no fish"), text_photo("menu: soup, bread")]

    predictor = Predictor(folder, backend="litert")
    results = predictor.predict(photos)

    assert isinstance(predictor._backend, LiteRTBackend)
    assert predictor.detector.method == RELATIVE
    assert json.loads((folder / "bundle.json").read_text())["unknown"]["outliers"] == "relative"
    expected = detector.score(keras.outputs(_pixels(photos))[EMBEDDING])
    assert np.allclose([r.unknown_score for r in results], expected, rtol=1e-3, atol=1e-3)
    assert [r.is_unknown for r in results] == [False] * len(CLASSES) + [True, True]
