"""The Streamlit app's logic, through Streamlit's AppTest (no browser; see test_app_browser.py for that)."""

import importlib.util
import io
import json
import math
import os
import shutil
import time

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest
from support import REPO_ROOT
from support.app_bundles import COLOUR_CLASSES, build_colour_bundle, colour_photo, jpeg_bytes, text_photo
from support.synthetic_images import tiff_without_dimensions

from fish_classifier import images
from fish_classifier.serving.bundle import add_file
from fish_classifier.serving.predictor import Prediction

APP = REPO_ROOT / "app" / "app.py"
THRESHOLD = 0.437  # not a round number, so the slider's default provably comes from the bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return build_colour_bundle(tmp_path_factory.mktemp("bundle") / "deploy", threshold=THRESHOLD)


@pytest.fixture(scope="module")
def app_module():
    """app/app.py imported as a module (its `main()` only runs under `streamlit run`)."""
    spec = importlib.util.spec_from_file_location("fish_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_app(monkeypatch, bundle_dir, uploads=None) -> AppTest:
    monkeypatch.setenv("FISH_BUNDLE", str(bundle_dir))
    app = AppTest.from_file(str(APP), default_timeout=120)
    app.run()
    if uploads is not None:
        app.file_uploader[0].set_value(uploads).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def captions(app: AppTest) -> list[str]:
    """The captions of the photos shown, in page order; the example row's photos have none."""
    return [caption for image in app.get("image") for caption in image.captions if caption]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def animated(format_: str) -> bytes:
    frames = [colour_photo(k % 3, 32, seed=k) for k in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=format_, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


def decompression_bomb() -> bytes:
    # A few kilobytes of PNG that would decode to 108 million pixels, over Pillow's limit.
    return png_bytes(Image.new("1", (12_000, 9_000)))


BAD_FILES = {
    "notes.jpg": lambda: b"these are field notes, not a photo\n",
    "truncated.jpg": lambda: jpeg_bytes(colour_photo(0, 128))[:1500],
    "empty.png": lambda: b"",
    "bomb.png": decompression_bomb,
    "renamed-animation.jpg": lambda: animated("GIF"),
    "animated.webp": lambda: animated("WEBP"),
    "photo.jpg": tiff_without_dimensions,
}
EXPECTED_REASONS = {
    "notes.jpg": "not a readable image",
    "truncated.jpg": "truncated",
    "empty.png": "empty",
    "bomb.png": "too large",
    "renamed-animation.jpg": "not one of JPEG, PNG",  # a GIF: not a format the app takes, whatever its name
    "animated.webp": "animated",
    "photo.jpg": "not one of JPEG, PNG",
}


def odd_but_valid_files() -> dict[str, bytes]:
    crimson = colour_photo(0, 96, seed=7)
    sixteen_bit = Image.fromarray(np.asarray(crimson.convert("L"), dtype=np.uint16) * 257)
    assert sixteen_bit.mode == "I;16"
    return {
        "crimson.jpg": jpeg_bytes(crimson),
        "cmyk.jpg": jpeg_bytes(crimson.convert("CMYK")),
        "sixteen-bit.png": png_bytes(sixteen_bit),
        "grayscale.png": png_bytes(crimson.convert("L")),
    }


def test_missing_bundle_says_to_run_dvc_repro(monkeypatch, tmp_path):
    app = run_app(monkeypatch, tmp_path / "nowhere")
    assert "no deploy bundle" in app.error[0].value
    assert "dvc repro" in app.info[0].value
    assert len(app.file_uploader) == 0


@pytest.mark.parametrize("broken_file", ["model.keras", "bundle.json", "labels.json"])
def test_broken_bundle_says_to_run_dvc_repro(monkeypatch, tmp_path, bundle, broken_file):
    broken = shutil.copytree(bundle, tmp_path / "deploy")
    (broken / broken_file).write_bytes(b"\x00 not what it should be")
    app = run_app(monkeypatch, broken)
    assert broken_file in app.error[0].value
    assert "dvc repro" in app.info[0].value
    assert len(app.file_uploader) == 0


def test_sidebar_shows_model_card_from_the_bundle(monkeypatch, bundle):
    app = run_app(monkeypatch, bundle)
    sidebar_text = "\n".join(m.value for m in app.sidebar.markdown)
    assert "colour-test-cnn" in sidebar_text
    for entry in COLOUR_CLASSES:
        assert entry["display"] in sidebar_text
    metrics = app.sidebar.table[0].value
    assert dict(zip(metrics["metric"], metrics["value"]))["Accuracy"] == "97.0%"
    assert app.sidebar.slider[0].value == pytest.approx(THRESHOLD)
    assert "3 known species" in app.file_uploader[0].label


def test_each_bad_file_gets_its_own_error_and_the_others_their_results(monkeypatch, bundle):
    uploads = {name: make() for name, make in BAD_FILES.items()} | odd_but_valid_files()
    app = run_app(monkeypatch, bundle, [(name, data, "application/octet-stream") for name, data in uploads.items()])

    errors = [e.value for e in app.error]
    assert len(errors) == len(BAD_FILES)
    for (name, reason), message in zip(EXPECTED_REASONS.items(), errors):
        assert name in message and reason in message, message
    # CMYK, 16-bit and grayscale photos are valid: each gets an answer. The test species are colours, so
    # the grey ones look like none of them, and the unknown-photo check says so instead of naming one.
    assert [c for c in captions(app) if c in uploads] == ["crimson.jpg", "cmyk.jpg", "sixteen-bit.png", "grayscale.png"]
    species = [h.value for h in app.subheader]
    assert species == ["Crimson testfish", "Crimson testfish", "Not a known fish", "Not a known fish"]
    assert app.get("download_button")[0].proto.label == f"Download the {len(uploads)} results as CSV"
    # The table on the page is the CSV's: a row per file, errors included.
    table = app.dataframe[0].value
    assert table["file"].tolist() == list(uploads)
    assert table.set_index("file").loc["crimson.jpg", "species"] == "Crimson testfish"
    assert "not a readable image" in table.set_index("file").loc["notes.jpg", "error"]


def test_low_confidence_warning_follows_the_threshold_slider(monkeypatch, bundle):
    app = run_app(monkeypatch, bundle, ("crimson.jpg", jpeg_bytes(colour_photo(0, 96)), "image/jpeg"))
    assert app.subheader[0].value == "Crimson testfish"
    assert float(app.metric[0].value.rstrip("%")) > 99
    assert not app.warning

    app.sidebar.slider[0].set_value(1.0).run()
    assert "may not be one of the 3 known species" in app.warning[0].value


def test_a_photo_that_is_no_fish_gets_a_plain_message_and_no_species(monkeypatch, bundle):
    app = run_app(monkeypatch, bundle, ("receipt.jpg", jpeg_bytes(text_photo("receipt #1234")), "image/jpeg"))
    assert [h.value for h in app.subheader] == ["Not a known fish"]
    [warning] = [w.value for w in app.warning]
    assert warning.startswith("This photo does not look like any of the 3 species this model knows (unknown-photo score")
    assert "so it gets no species" in warning
    assert not app.metric  # no confidence shown for a species it does not get
    assert app.caption[0].value.startswith("Closest species, not an answer: ")
    # No heatmap for a photo the model does not know: it would point at some part of it as if it were a fish.
    assert captions(app) == ["receipt.jpg"]


def test_heatmap_toggle_adds_and_removes_the_overlay(monkeypatch, bundle):
    app = run_app(monkeypatch, bundle, ("cobalt.png", png_bytes(colour_photo(2, 80)), "image/png"))
    assert captions(app) == ["cobalt.png", "Where the model looked"]
    app.toggle[0].set_value(False).run()
    assert captions(app) == ["cobalt.png"]


def test_more_photos_than_the_cap_get_the_first_ones_identified_and_a_message(monkeypatch, bundle, app_module):
    cap = app_module.MAX_FILES
    photos = [jpeg_bytes(colour_photo(0, 32, seed=500 + i)) for i in range(cap + 2)]
    uploads = [(f"crimson-{i:02d}.jpg", data, "image/jpeg") for i, data in enumerate(photos)]
    app = run_app(monkeypatch, bundle, uploads)
    assert [e.value for e in app.error] == [
        f"{cap + 2} photos chosen, but the app identifies at most {cap} at a time: "
        f"the first {cap} are shown below. Upload the other 2 in another batch."
    ]
    assert [c for c in captions(app) if c.startswith("crimson-")] == [name for name, _, _ in uploads[:cap]]
    assert app.get("download_button")[0].proto.label == f"Download the {cap} results as CSV"


def test_each_upload_is_decoded_once_a_run_and_not_again_once_its_results_are_cached(monkeypatch, bundle):
    decoded = []

    def counting_open(stream):
        decoded.append(stream)
        return opened(stream)

    opened = images._open
    monkeypatch.setattr(images, "_open", counting_open)
    st.cache_data.clear()
    uploads = [(f"cobalt-{i}.jpg", jpeg_bytes(colour_photo(2, 64, seed=700 + i)), "image/jpeg") for i in range(3)]
    app = run_app(monkeypatch, bundle, uploads)
    # Once each for the model, the display and the heatmap (it used to be three times).
    assert len(decoded) == 3
    assert captions(app).count("Where the model looked") == 3

    app.toggle[0].set_value(False).run()  # the predictions are cached, the photos without heatmap are not
    assert len(decoded) == 6
    app.toggle[0].set_value(True).run()  # everything is cached
    assert len(decoded) == 6


def test_clicking_an_example_photo_identifies_it_like_an_upload_until_photos_are_uploaded(monkeypatch, bundle):
    app = run_app(monkeypatch, bundle)
    assert [button.label for button in app.button] == [c["display"] for c in COLOUR_CLASSES]
    assert len(app.get("image")) == len(COLOUR_CLASSES)  # the row of example photos
    assert "or try an example photo" in app.info[0].value

    app.button(key="example-1").click().run()
    assert [h.value for h in app.subheader] == ["Emerald testfish"]
    assert captions(app) == ["Example: Emerald testfish", "Where the model looked"]
    assert float(app.metric[0].value.rstrip("%")) > 99
    assert app.dataframe[0].value[["file", "species"]].values.tolist() == [["Example: Emerald testfish",
                                                                            "Emerald testfish"]]
    app.sidebar.slider[0].set_value(1.0).run()  # the example stays chosen while the settings change
    assert [h.value for h in app.subheader] == ["Emerald testfish"]
    assert "may not be one of the 3 known species" in app.warning[0].value

    app.file_uploader[0].set_value(("cobalt.png", png_bytes(colour_photo(2, 80)), "image/png")).run()
    assert [h.value for h in app.subheader] == ["Cobalt testfish"]
    assert captions(app) == ["cobalt.png", "Where the model looked"]


def test_a_bundle_without_examples_shows_no_example_row(monkeypatch, tmp_path, bundle):
    older = shutil.copytree(bundle, tmp_path / "older")
    info = json.loads((older / "bundle.json").read_text())
    del info["examples"]
    info["files"] = {name: sha for name, sha in info["files"].items() if not name.startswith("examples/")}
    (older / "bundle.json").write_text(json.dumps(info))
    shutil.rmtree(older / "examples")
    app = run_app(monkeypatch, older)
    assert not app.button and not app.get("image")
    assert app.info[0].value == "Upload one or more photos (.jpg, .jpeg, .png, .webp, .bmp)."


def test_a_rebuilt_bundle_is_picked_up_without_restarting(monkeypatch, tmp_path, bundle):
    deploy = shutil.copytree(bundle, tmp_path / "deploy")
    app = run_app(monkeypatch, deploy)
    assert "Crimson testfish" in "\n".join(m.value for m in app.sidebar.markdown)

    labels = json.loads((deploy / "labels.json").read_text())
    labels["classes"][0]["display"] = "Scarlet testfish"
    (deploy / "labels.json").write_text(json.dumps(labels))
    add_file(deploy, "labels.json")  # as a rebuild would: a hand-edited file is refused by its hash
    later = time.time() + 5
    os.utime(deploy / "labels.json", (later, later))
    app.run()
    sidebar_text = "\n".join(m.value for m in app.sidebar.markdown)
    assert "Scarlet testfish" in sidebar_text and "Crimson testfish" not in sidebar_text


def test_results_table_has_one_row_per_file_with_top_k_and_errors(app_module):
    good = Prediction(
        source="a",
        label="test cobalt",
        display_name="Cobalt testfish",
        confidence=0.8,
        top_k=[("test cobalt", "Cobalt testfish", 0.8), ("test crimson", "Crimson testfish", 0.15)],
        is_low_confidence=False,
        is_unknown=True,
        unknown_score=12.5,
    )
    bad = Prediction(source="b", label=None, display_name=None, confidence=math.nan, error="file is empty (0 bytes)")
    table = app_module.results_table([("cobalt.jpg", good), ("empty.png", bad)])
    csv = pd.read_csv(io.StringIO(table.to_csv(index=False)))

    assert list(csv["file"]) == ["cobalt.jpg", "empty.png"]
    assert csv.loc[0, "unknown"] == True and csv.loc[0, "unknown_score"] == 12.5  # noqa: E712 (a CSV cell)
    assert pd.isna(csv.loc[1, "unknown"]) and math.isnan(csv.loc[1, "unknown_score"])
    assert csv.loc[0, "species"] == "Cobalt testfish" and pd.isna(csv.loc[1, "species"])
    assert csv.loc[0, "top2_species"] == "Crimson testfish" and csv.loc[0, "top2_probability"] == 0.15
    assert csv.loc[1, "error"] == "file is empty (0 bytes)" and pd.isna(csv.loc[0, "error"])
    assert math.isnan(csv.loc[1, "confidence"])


def test_heatmap_overlay_colours_the_hot_region_red_and_leaves_cold_ones_alone(app_module):
    photo = Image.new("RGB", (64, 48), (128, 128, 128))
    cam = np.zeros((4, 4), dtype=np.float32)
    cam[0, 0] = 1.0
    overlay = np.asarray(app_module.heatmap_overlay(photo, cam)).astype(int)
    assert overlay.shape == (48, 64, 3)
    hot, cold = overlay[2, 2], overlay[-2, -2]
    assert hot[0] - max(hot[1], hot[2]) > 50  # reddened
    assert list(cold) == [128, 128, 128]


def test_the_heatmap_colours_are_matplotlibs_jet_without_matplotlib(app_module):
    from matplotlib import colormaps  # a dev dependency only: the serving image has no matplotlib

    levels = np.arange(256) / 255.0  # every level the overlay can ask for (a uint8 map over 255)
    ours = np.uint8(app_module.jet(levels) * 255).astype(int)
    theirs = np.uint8(colormaps["jet"](levels)[:, :3] * 255).astype(int)
    assert np.abs(ours - theirs).max() <= 1
    assert ours[0].tolist() == [0, 0, 127] and ours[-1].tolist() == [127, 0, 0]  # dark blue to dark red


def test_file_names_are_shown_literally_not_as_markdown(app_module):
    assert app_module.literal("reef_*shot*_$5.jpg") == r"reef\_\*shot\*\_\$5.jpg"


def test_top_k_chart_puts_the_most_likely_first_on_a_fixed_percent_axis(app_module):
    prediction = Prediction(
        source="a",
        label="test emerald",
        display_name="Emerald testfish",
        confidence=0.55,
        top_k=[("test emerald", "Emerald testfish", 0.55), ("test cobalt", "Cobalt testfish", 0.4)],
    )
    spec = app_module.top_k_chart(prediction).to_dict()
    assert spec["encoding"]["x"]["scale"]["domain"] == [0, 1]
    assert spec["encoding"]["y"]["sort"] == "-x"
    rows = next(iter(spec["datasets"].values()))
    assert rows == [
        {"species": "Emerald testfish", "probability": 0.55},
        {"species": "Cobalt testfish", "probability": 0.4},
    ]
