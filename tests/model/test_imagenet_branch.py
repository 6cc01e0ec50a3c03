"""The ImageNet branch: cut where the deploy backbone stops being ImageNet's, exported beside the deploy model, and
giving the ImageNet model's own answers (a tiny MobileNetV2 with random weights stands in for ImageNet's)."""

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from support import REPO_ROOT
from support.fixtures_models import CLASSES, LABELS, probe_images

from fish_classifier.images import load_pixels
from fish_classifier.evaluation.unknown_fit import UnknownSettings, fit_unknown_detector
from fish_classifier.model import imagenet_branch
from fish_classifier.model.imagenet_branch import branch_for, shared_split
from fish_classifier.model.zoo import ZOO, WeightsUnavailableError
from fish_classifier.serving.bundle import BundleError
from fish_classifier.serving.inference import EMBEDDING, IMAGENET, PROBABILITIES, LiteRTBackend
from fish_classifier.serving.predictor import Predictor

SIZE = 32
FINE_TUNED = ("block_16_expand", "block_16_project", "Conv_1")  # the layers "training" moved


def tiny_imagenet():
    """A MobileNetV2 with its 1000-class head and random weights: ImageNet's, for these tests."""
    import keras

    keras.utils.set_random_seed(3)
    return keras.applications.MobileNetV2(include_top=True, weights=None, input_shape=(SIZE, SIZE, 3), alpha=0.35)


def deploy_model(imagenet, *, mirror_average: bool, moved=FINE_TUNED):
    """A deploy model whose backbone starts from `imagenet`'s weights, with the `moved` layers changed as
    fine-tuning changes them."""
    import keras

    from fish_classifier.model.zoo import build_head, build_model

    backbone = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3), alpha=0.35)
    for layer in backbone.layers:
        if layer.weights:
            layer.set_weights(imagenet.get_layer(layer.name).get_weights())
    for name in moved:
        layer = backbone.get_layer(name)
        layer.set_weights([w + 0.05 for w in layer.get_weights()])
    return build_model("mobilenetv2", len(CLASSES), backbone=backbone, head=build_head(len(CLASSES), 0.1),
                       mirror_average=mirror_average)


@pytest.fixture(scope="module")
def imagenet():
    return tiny_imagenet()


def test_the_cut_is_the_deepest_below_which_every_layer_is_imagenets(imagenet):
    model = deploy_model(imagenet, mirror_average=False)
    backbone = [layer for layer in model.layers if hasattr(layer, "layers")][0]
    lower, upper, imagenet_upper = shared_split(backbone, imagenet)
    above = {layer.name for layer in upper.layers}
    assert set(FINE_TUNED) <= above and "block_15_add" not in above  # block 16 starts the changed part
    assert all(np.array_equal(a, b) for layer in lower.layers if layer.weights
               for a, b in zip(layer.get_weights(), imagenet.get_layer(layer.name).get_weights()))
    assert imagenet_upper.layers[1].name == upper.layers[1].name and imagenet_upper.output_shape == (None, 1000)


def test_a_backbone_whose_first_layers_are_not_imagenets_shares_nothing_and_is_refused(imagenet):
    model = deploy_model(imagenet, mirror_average=False, moved=("Conv1", *FINE_TUNED))
    backbone = [layer for layer in model.layers if hasattr(layer, "layers")][0]
    with pytest.raises(ValueError, match=r"shares no layer with .*weights: none\?"):
        shared_split(backbone, imagenet)


@pytest.fixture(scope="module")
def branch_bundle(imagenet, tmp_path_factory):
    """A bundle around a mirror-averaging MobileNetV2 deploy model, exported with its ImageNet branch."""
    from fish_classifier.serving.bundle_writer import write_bundle
    from fish_classifier.serving.export import export_for_serving

    folder = tmp_path_factory.mktemp("branch") / "deploy"
    model_path = folder.parent / "model.keras"
    deploy_model(imagenet, mirror_average=True).save(model_path)
    write_bundle(folder, model_path=model_path, classes=CLASSES, model_name="mobilenetv2", temperature=1.0,
                 threshold=0.5, top_k=3, metrics={"accuracy": 1.0}, data_hash="sha256:test")
    return folder, export_for_serving(folder, probe_images(6), imagenet=imagenet)


def test_the_exported_branch_gives_the_imagenet_models_own_answers_beside_the_deploy_models(imagenet, branch_bundle):
    import keras

    from fish_classifier.model.preprocessing import load_model

    folder, report = branch_bundle
    pixels = np.random.default_rng(4).uniform(0, 255, (3, SIZE, SIZE, 3)).astype("float32")
    got = LiteRTBackend(folder / "model.tflite", num_threads=1).outputs(pixels)
    # ImageNet's preprocessing for MobileNetV2 by hand, and the mean over the photo and its mirror.
    scaled = pixels / 127.5 - 1.0
    expected = (np.asarray(imagenet(scaled)) + np.asarray(imagenet(scaled[:, :, ::-1]))) / 2
    np.testing.assert_allclose(got[IMAGENET], expected, atol=1e-4)
    keras.backend.clear_session()
    deploy = load_model(folder.parent / "model.keras")
    np.testing.assert_allclose(got[PROBABILITIES], np.asarray(deploy(pixels)), atol=1e-4)
    serving = json.loads((folder / "bundle.json").read_text())["serving"]
    assert serving["outputs"][-1] == IMAGENET and report["imagenet_max_abs_diff"] <= 1e-4
    assert serving["parity"]["imagenet_max_abs_diff"] == report["imagenet_max_abs_diff"]


@pytest.fixture(scope="module")
def served(branch_bundle):
    """The branch bundle with a detector that hears the ImageNet head (fitted on random photos), and that detector."""
    from fish_classifier.serving.bundle_writer import add_unknown_detector

    folder, _ = branch_bundle
    backend = LiteRTBackend(folder / "model.tflite", num_threads=1)
    rng = np.random.default_rng(5)
    train = backend.outputs(rng.uniform(0, 255, (30, SIZE, SIZE, 3)))
    val = backend.outputs(rng.uniform(0, 255, (10, SIZE, SIZE, 3)))
    settings = UnknownSettings("mahalanobis", 0.5, 1, 0.1, imagenet_weight=0.5)
    detector = fit_unknown_detector(settings, train[EMBEDDING], np.arange(30) % 3, val[EMBEDDING],
                                    val_imagenet=val[IMAGENET])
    add_unknown_detector(folder, detector)
    return folder, detector


def test_a_detector_that_hears_the_imagenet_head_serves_through_litert_only(served):
    folder, detector = served
    photos = probe_images(4)
    predictions = Predictor(folder, num_threads=1).predict(photos)
    outputs = LiteRTBackend(folder / "model.tflite", num_threads=1).outputs(
        np.stack([load_pixels(photo, SIZE) for photo in photos]))
    np.testing.assert_allclose([p.unknown_score for p in predictions],
                               detector.score(outputs[EMBEDDING], outputs[IMAGENET]), rtol=1e-4, atol=1e-4)
    with pytest.raises(BundleError, match=r"scores the ImageNet branch, which only model.tflite has, and the keras "
                                          r"backend runs no such branch"):
        Predictor(folder, backend="keras")


def test_the_branch_bundle_serves_as_the_docker_image_runs_it_without_tensorflow_keras_or_scikit_learn(served):
    folder, _ = served
    script = textwrap.dedent(
        f"""
        import json
        import sys
        from importlib.abc import MetaPathFinder

        class Blocked(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {{"tensorflow", "keras", "sklearn"}}:
                    raise ImportError(f"{{name}} is blocked: the serving image does not have it")

        sys.meta_path.insert(0, Blocked())
        from fish_classifier.serving.predictor import Predictor

        predictor = Predictor({str(folder)!r}, num_threads=1)
        rows = predictor.predict([{", ".join(repr(str(p)) for p in _saved_probes(folder.parent))}])
        print(json.dumps([predictor.backend, predictor.detector.needs_imagenet, [r.unknown_score for r in rows]]))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    backend, needs, scores = json.loads(run.stdout.strip().splitlines()[-1])
    expected = [r.unknown_score for r in Predictor(folder, num_threads=1).predict(_saved_probes(folder.parent))]
    assert (backend, needs) == ("litert", True) and np.allclose(scores, expected, atol=1e-4)


def _saved_probes(folder) -> list:
    paths = []
    for i, photo in enumerate(probe_images(3)):
        photo.save(folder / f"probe{i}.png")
        paths.append(folder / f"probe{i}.png")
    return paths


def test_branch_for_builds_one_only_for_a_backbone_from_imagenet_weights_and_settles_the_weight(monkeypatch):
    monkeypatch.setattr(imagenet_branch, "imagenet_model", lambda name: f"imagenet {name}")
    asked = UnknownSettings("mahalanobis", 0.5, 1, 0.01, "relative", imagenet_weight=0.5)

    class Weights:
        def __init__(self, weights):
            self.weights = weights

    assert branch_for("mobilenetv2", Weights("imagenet"), asked) == (asked, "imagenet mobilenetv2")
    for name, settings in (("mobilenetv2", Weights("none")), ("resnet50", Weights("my.h5")), ("cnn", None)):
        assert branch_for(name, settings, asked) == (replace(asked, imagenet_weight=0.0), None)
    assert branch_for("mobilenetv2", Weights("imagenet"), replace(asked, imagenet_weight=0.0))[1] is None


def test_imagenet_weights_that_cannot_be_loaded_name_the_key_that_turns_the_branch_off(monkeypatch):
    def offline(**kwargs):
        raise Exception("URL fetch failure")  # what Keras raises when the download fails

    monkeypatch.setitem(ZOO, "mobilenetv2", replace(ZOO["mobilenetv2"], application=offline))
    with pytest.raises(WeightsUnavailableError, match=r"mobilenetv2's ImageNet weights with the 1000-class head "
                                                      r"\(URL fetch failure\).*select.unknown_imagenet_weight to 0"):
        imagenet_branch.imagenet_model("mobilenetv2")
    with pytest.raises(ValueError, match="cnn has no ImageNet head"):
        imagenet_branch.imagenet_model("cnn")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), [("vgg16", 32), ("resnet50", 32), ("inceptionv3", 75),
                                            ("efficientnetb0", 32)])
def test_every_backbone_of_the_zoo_shares_its_layers_with_its_imagenet_model_and_gives_its_answers(name, size):
    """The other backbones, whose ImageNet weights this machine lacks: random stand-ins, as for MobileNetV2 above.
    InceptionV3's and EfficientNet's unnamed layers are numbered anew in each model, so layers pair by place."""
    import keras

    from fish_classifier.model.imagenet_branch import with_imagenet_branch
    from fish_classifier.model.zoo import build_head, build_model, zoo_model
    from fish_classifier.serving.inference import serving_model

    application = zoo_model(name).application
    keras.utils.set_random_seed(7)
    imagenet = application(include_top=True, weights=None, input_shape=(size, size, 3))
    backbone = application(include_top=False, weights=None, input_shape=(size, size, 3))
    for layer, twin in zip(backbone.layers, imagenet.layers):  # by place: unnamed layers get other names here
        layer.set_weights(twin.get_weights())
    top = [layer for layer in backbone.layers if layer.weights][-1]  # "fine-tuned": the last layer with weights moves
    top.set_weights([w + 0.05 for w in top.get_weights()])
    model = build_model(name, len(CLASSES), backbone=backbone, head=build_head(len(CLASSES), 0.1))

    serving = serving_model(model, with_imagenet_branch(model, imagenet))
    pixels = np.random.default_rng(8).uniform(0, 255, (2, size, size, 3)).astype("float32")
    outputs = serving(pixels, training=False)
    preprocessed = model.get_layer("preprocess")(pixels)
    np.testing.assert_allclose(np.asarray(outputs[IMAGENET]), np.asarray(imagenet(preprocessed, training=False)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(outputs[PROBABILITIES]), np.asarray(model(pixels, training=False)),
                               rtol=1e-4, atol=1e-5)


def test_the_predictor_flags_the_catch_all_answers_the_imagenet_head_does_not_back(served, tmp_path):
    import shutil

    from fish_classifier.serving.bundle_writer import add_catch_all_doubt
    from fish_classifier.serving.catch_all import IMAGENET_OTHER_FISH_CLASSES, CatchAllDoubt, other_fish_mass
    from fish_classifier.serving.prediction_row import prediction_row

    folder = Path(shutil.copytree(served[0], tmp_path / "deploy"))
    photos = probe_images(6)
    outputs = LiteRTBackend(folder / "model.tflite", num_threads=1).outputs(
        np.stack([load_pixels(photo, SIZE) for photo in photos]))
    top = [CLASSES[k]["label"] for k in outputs[PROBABILITIES].argmax(axis=1)]
    assert other_fish_mass(outputs[IMAGENET]).max() < 1  # a random head backs no answer whole
    # The first photo's answer stands for the catch-all: a threshold of 1 doubts every photo so answered, 0 none.
    doubt = CatchAllDoubt((top[0],), IMAGENET_OTHER_FISH_CLASSES, threshold=1.0, rate=0.5)
    add_catch_all_doubt(folder, doubt)
    predictions = Predictor(folder, num_threads=1).predict(photos)
    assert [p.doubted for p in predictions] == [label == top[0] for label in top]
    assert all(p.is_low_confidence for p in predictions if p.doubted)
    # Its CSV row keeps the answer and names the species ranked next, as the app's message does.
    first = predictions[0]
    assert prediction_row(first)["closest_species"] == first.top_k[1][1] != first.display_name
    for unbacked in (replace(doubt, threshold=0.0), replace(doubt, labels=tuple(set(LABELS) - set(top)))):
        add_catch_all_doubt(folder, unbacked)  # nothing below 0, or no photo answered with those labels
        assert not any(p.doubted for p in Predictor(folder, num_threads=1).predict(photos))
    assert [p.label for p in predictions] == top  # a doubted answer stays the answer
