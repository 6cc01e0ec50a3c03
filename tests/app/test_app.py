"""The Streamlit app's logic, through Streamlit's AppTest (no browser; see test_app_browser.py for that)."""

import hashlib
import importlib.util
import io
import json
import math
import os
import re
import shutil
import time
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest
from support import REPO_ROOT
from support.app_bundles import COLOUR_CLASSES, build_colour_bundle, colour_photo, jpeg_bytes, text_photo
from support.synthetic_images import tiff_without_dimensions

import feedback  # app/feedback.py, app/uploads.py (tests/app/conftest.py puts app/ on sys.path)
import uploads as app_uploads

from fish_classifier import images
from fish_classifier.serving.bundle_writer import add_file
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


def as_shown(markdown: str) -> str:
    """What a reader sees of the app's markdown, as far as the tests look: escapes and code spans undone."""
    return re.sub(r"\\(.)", r"\1", re.sub(r"(`+) (.*?) \1", r"\2", markdown))


def captions(app: AppTest) -> list[str]:
    """The captions of the photos shown, as a reader sees them, in page order; the example row's have none."""
    return [as_shown(caption) for image in app.get("image") for caption in image.captions if caption]


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
    "bomb.png": "pixel limit",
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
    assert broken_file in as_shown(app.error[0].value)
    assert "dvc repro" in app.info[0].value
    assert len(app.file_uploader) == 0


def test_sidebar_shows_model_card_from_the_bundle(monkeypatch, bundle):
    app = run_app(monkeypatch, bundle)
    sidebar_text = as_shown("\n".join(m.value for m in app.sidebar.markdown))
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

    errors = [as_shown(e.value) for e in app.error]
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
    assert table["path"].tolist() == list(uploads)
    assert table.set_index("path").loc["crimson.jpg", "species"] == "Crimson testfish"
    assert "not a readable image" in table.set_index("path").loc["notes.jpg", "error"]


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
    assert [c.value for c in app.caption if c.value.startswith("Closest species, not an answer: ")]
    # No heatmap for a photo the model does not know: it would point at some part of it as if it were a fish.
    assert captions(app) == ["receipt.jpg"]


def test_a_photo_that_shows_nothing_says_why_it_gets_no_species(monkeypatch, bundle):
    # A flat colour and a 1x1 dot: unknown whatever the model says (fish_classifier.images.no_content).
    app = run_app(monkeypatch, bundle, [("flat.png", png_bytes(Image.new("RGB", (64, 64), (0, 255, 0))), "image/png"),
                                        ("dot.png", png_bytes(Image.new("RGB", (1, 1), (0, 255, 0))), "image/png")])
    assert [h.value for h in app.subheader] == ["Not a known fish", "Not a known fish"]
    assert [as_shown(w.value) for w in app.warning] == [
        "No species: the photo is one flat colour (brightness spread 0.0 of 255): nothing in it to see.",
        "No species: the photo is 1x1 pixels, under 16 on a side: too small to show a fish.",
    ]


def test_heatmap_toggle_adds_and_removes_the_overlay(monkeypatch, bundle):
    app = run_app(monkeypatch, bundle, ("cobalt.png", png_bytes(colour_photo(2, 80)), "image/png"))
    assert captions(app) == ["cobalt.png", "Where the model looked"]
    app.toggle[0].set_value(False).run()
    assert captions(app) == ["cobalt.png"]


def test_more_photos_than_the_cap_get_the_first_ones_identified_and_a_message(monkeypatch, bundle):
    cap = app_uploads.MAX_FILES
    photos = [jpeg_bytes(colour_photo(0, 32, seed=500 + i)) for i in range(cap + 2)]
    uploads = [(f"crimson-{i:02d}.jpg", data, "image/jpeg") for i, data in enumerate(photos)]
    app = run_app(monkeypatch, bundle, uploads)
    assert [e.value for e in app.error] == [
        f"{cap + 2} photos chosen, but the app identifies at most {cap} at a time: "
        f"the first {cap} are shown below. Upload the other 2 in another batch."
    ]
    assert [c for c in captions(app) if c.startswith("crimson-")] == [name for name, _, _ in uploads[:cap]]
    assert app.get("download_button")[0].proto.label == f"Download the {cap} results as CSV"


@pytest.mark.parametrize("size", [(1, 3000), (3000, 1), (1, 961), (2, 1000)])
def test_a_very_thin_photo_gets_its_own_answer_and_the_good_one_beside_it_its_own(monkeypatch, bundle, app_module,
                                                                                size):
    # Scaled to 480 px, a strip thinner than 960:1 used to be 0 pixels wide: Pillow refused, and the batch got nothing.
    st.cache_data.clear()
    uploads = [("thin.png", png_bytes(Image.new("RGB", size, (40, 70, 210))), "image/png"),
               ("crimson.jpg", jpeg_bytes(colour_photo(0, 96, seed=9)), "image/jpeg")]
    app = run_app(monkeypatch, bundle, uploads)
    assert not app.error
    assert [as_shown(c) for c in captions(app) if c != "Where the model looked"] == ["thin.png", "crimson.jpg"]
    assert app.subheader[1].value == "Crimson testfish"
    shown = app_module.framed(app_module.scaled_to_display(Image.new("RGB", size)))
    assert max(shown.size) <= app_module.DISPLAY_SIZE
    assert min(shown.size) * app_module.MAX_SHOWN_RATIO >= max(shown.size)


def test_a_photo_whose_heatmap_or_display_fails_keeps_its_answer_and_the_others_theirs(monkeypatch, bundle):
    from fish_classifier.serving.predictor import Predictor

    st.cache_data.clear()
    real_map = Predictor.class_activation_map

    def fails_on_blue(self, image, class_index=None):
        if np.asarray(image)[..., 2].mean() > 150:  # the cobalt photo
            raise RuntimeError("no map for you")
        return real_map(self, image, class_index)

    monkeypatch.setattr(Predictor, "class_activation_map", fails_on_blue)
    uploads = [("cobalt.png", png_bytes(colour_photo(2, 80)), "image/png"),
               ("crimson.jpg", jpeg_bytes(colour_photo(0, 96, seed=9)), "image/jpeg")]
    app = run_app(monkeypatch, bundle, uploads)
    assert not app.error
    assert [h.value for h in app.subheader] == ["Cobalt testfish", "Crimson testfish"]
    assert captions(app) == ["cobalt.png", "crimson.jpg", "Where the model looked"]
    assert [as_shown(c.value) for c in app.caption if c.value != feedback.NOTICE] == [
        "no map of where the model looked, it could not be drawn (RuntimeError)."]


def test_a_photo_the_model_fails_on_gets_its_own_error_and_the_others_their_results(monkeypatch, bundle):
    from fish_classifier.serving.predictor import Predictor

    st.cache_data.clear()
    real_predict = Predictor.predict

    def fails_on_green(self, images, *args, **kwargs):
        if any(np.asarray(image)[..., 1].mean() > 150 for image in images):  # the emerald photo
            raise MemoryError
        return real_predict(self, images, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", fails_on_green)
    uploads = [("emerald.png", png_bytes(colour_photo(1, 80)), "image/png"),
               ("crimson.jpg", jpeg_bytes(colour_photo(0, 96, seed=9)), "image/jpeg")]
    app = run_app(monkeypatch, bundle, uploads)
    assert [as_shown(e.value) for e in app.error] == ["**emerald.png**: could not be identified (MemoryError)"]
    assert [h.value for h in app.subheader] == ["Crimson testfish"]
    assert app.dataframe[0].value["error"].tolist() == ["could not be identified (MemoryError)", ""]


def test_a_batch_over_the_session_cap_gets_its_first_photos_identified_and_a_message(monkeypatch, bundle):
    cap = app_uploads.SESSION_UPLOAD_MB * app_uploads.MB
    size = 19 * app_uploads.MB
    count = cap // size + 2  # two past the cap
    uploads = [(f"big-{i}.jpg", bytes([i]) * size, "image/jpeg") for i in range(count)]
    app = run_app(monkeypatch, bundle, uploads)
    kept = cap // size
    [notice, *errors] = [e.value for e in app.error]
    assert notice == (f"{count} photos chosen, {count * 19:.1f} MB in all, but the app identifies at most "
                      f"{app_uploads.SESSION_UPLOAD_MB} MB of photos at a time: the first {kept} ({kept * 19:.1f} MB) "
                      f"are shown below. Upload the other 2 in another batch.")
    assert len(errors) == kept  # each not a readable image, each on its own
    assert app.dataframe[0].value["path"].tolist() == [name for name, _, _ in uploads[:kept]]


def test_a_batch_is_cut_at_the_count_cap_or_the_byte_cap_whichever_comes_first():
    assert app_uploads.batch_length([10] * 5, max_files=3, max_bytes=100) == 3
    assert app_uploads.batch_length([40] * 5, max_files=3, max_bytes=100) == 2
    assert app_uploads.batch_length([40, 60, 1], max_files=3, max_bytes=100) == 2
    assert app_uploads.batch_length([101], max_files=3, max_bytes=100) == 0
    assert app_uploads.batch_length([], max_files=3, max_bytes=100) == 0


def upload_record(file_id: str, size: int, name: str | None = None):
    from streamlit.runtime.uploaded_file_manager import UploadedFileRec

    return UploadedFileRec(file_id=file_id, name=name or f"{file_id}.jpg", type="image/jpeg", data=b"x" * size)


def test_the_upload_budget_refuses_what_would_take_a_session_or_the_server_past_its_cap():
    from starlette.exceptions import HTTPException
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager

    manager = MemoryUploadedFileManager("/upload")
    budget = app_uploads.UploadBudget(manager, session_bytes=100, server_bytes=250)
    manager.add_file("a", upload_record("a1", 60))
    manager.add_file("a", upload_record("a1", 90))  # the same file again replaces it: 90 held, not 150
    with pytest.raises(HTTPException) as refused:
        manager.add_file("a", upload_record("a2", 20, name="=evil.jpg"))
    assert refused.value.status_code == 413
    manager.add_file("b", upload_record("b1", 100))
    with pytest.raises(HTTPException):
        manager.add_file("c", upload_record("c1", 70))  # 90 + 100 + 70 > 250
    manager.add_file("c", upload_record("c2", 60))
    assert budget.held("a") == 90 and budget.held() == 250 and manager.get_files("a", ["a2"]) == []
    assert budget.take_refused("a") == [("=evil.jpg", 20, "session")]
    assert budget.take_refused("a") == [] and budget.take_refused("c") == [("c1.jpg", 70, "server")]


def test_a_closed_sessions_uploads_are_dropped_after_the_grace_period_and_open_ones_kept():
    from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager

    manager = MemoryUploadedFileManager("/upload")
    active, closed = {"open"}, []
    budget = app_uploads.UploadBudget(manager, session_bytes=100, server_bytes=1000, is_active=active.__contains__,
                                     close_session=closed.append, forget_after=10)
    manager.add_file("open", upload_record("o", 50))
    manager.add_file("gone", upload_record("g", 70))
    assert budget.sweep(now=100.0) == 0  # "gone" has just been seen disconnected
    assert budget.sweep(now=105.0) == 0  # it may still reconnect
    assert budget.sweep(now=110.0) == 70
    assert closed == ["gone"] and list(manager.file_storage) == ["open"] and budget.held() == 50
    active.clear()
    assert budget.sweep(now=200.0) == 0 and budget.sweep(now=210.0) == 50 and not manager.file_storage


def test_the_refusal_notice_names_the_files_their_size_and_the_cap(app_module):
    mb = app_uploads.MB
    refused = [(f"[photo {i}](x).jpg", 19 * mb, "session") for i in range(6)] + [("late.jpg", mb, "server")]
    notice = app_module.refusal_notice(refused)
    assert as_shown(notice) == (
        "7 photos not accepted ([photo 0](x).jpg, [photo 1](x).jpg, [photo 2](x).jpg, [photo 3](x).jpg, "
        f"[photo 4](x).jpg and 2 more; 115.0 MB): one browser session holds at most {app_uploads.SESSION_UPLOAD_MB} MB "
        f"of photos at a time, and the server holds at most {app_uploads.SERVER_UPLOAD_MB} MB of photos for all its "
        "users at once, and is full now: try again in a minute. Remove photos from the uploader (their ×) to make "
        "room, or identify these in another batch.")


def test_releasing_memory_is_harmless_anywhere():
    app_uploads.release_memory()  # glibc's malloc_trim where there is one, nothing elsewhere


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

    app.toggle[0].set_value(False).run()  # the predictions and the photos as shown are cached
    assert len(decoded) == 3 and captions(app).count("Where the model looked") == 0
    app.toggle[0].set_value(True).run()  # and so are the heatmaps
    assert len(decoded) == 3 and captions(app).count("Where the model looked") == 3


def shown_images(app: AppTest) -> dict[str, str]:
    """{caption as a reader sees it: the image's media URL} of the result photos shown (the example row's have none)."""
    return {as_shown(caption): url for image in app.get("image") for caption, url in zip(image.captions, image.value)
            if caption}


def count_hashing(monkeypatch) -> tuple[list[bytes], list[bytes]]:
    """(the bytes the app's upload_digest hashes, the bytes Streamlit hashes to key its caches), as the page runs."""
    from streamlit.runtime.caching import cache_utils

    ours, streamlits = [], []

    def sha256(data):
        ours.append(bytes(data))
        return hashlib.sha256(data)

    def update_hash(value, *args, **kwargs):
        if isinstance(value, (bytes, bytearray)):
            streamlits.append(bytes(value))
        return real_update_hash(value, *args, **kwargs)

    real_update_hash = cache_utils.update_hash
    monkeypatch.setattr(app_uploads, "hashlib", SimpleNamespace(sha256=sha256))
    monkeypatch.setattr(cache_utils, "update_hash", update_hash)
    return ours, streamlits


def test_each_upload_is_hashed_once_however_often_the_page_runs_and_streamlit_hashes_no_photo(monkeypatch, bundle):
    ours, streamlits = count_hashing(monkeypatch)
    crimson, cobalt = jpeg_bytes(colour_photo(0, 96, seed=41)), jpeg_bytes(colour_photo(2, 96, seed=42))
    app = run_app(monkeypatch, bundle, [("crimson.jpg", crimson, "image/jpeg"), ("cobalt.jpg", cobalt, "image/jpeg")])
    assert [h.value for h in app.subheader] == ["Crimson testfish", "Cobalt testfish"]
    app.toggle[0].set_value(False).run()  # more runs of the page, the uploads unchanged
    app.sidebar.slider[0].set_value(1.0).run()
    app.toggle[0].set_value(True).run()
    app.button(key="example-1").click().run()  # an example beside them: its sha256 is bundle.json's, not hashed
    assert not app.exception
    assert [h.value for h in app.subheader] == ["Emerald testfish", "Crimson testfish", "Cobalt testfish"]
    assert captions(app).count("Where the model looked") == 3
    assert ours == [crimson, cobalt]
    # Streamlit's caches are keyed by the digest: no photo's bytes are hashed there, on any run.
    photos = {crimson, cobalt, (bundle / "examples" / "1.jpg").read_bytes()}
    assert sum(value in photos for value in streamlits) == 0
    assert sorted(app.session_state[app_uploads.DIGESTS_KEY].values()) == sorted(
        hashlib.sha256(photo).hexdigest() for photo in (crimson, cobalt))


def test_a_new_upload_of_an_old_ones_name_gets_its_own_answer_not_the_old_ones(monkeypatch, bundle):
    ours, _ = count_hashing(monkeypatch)
    crimson, cobalt = jpeg_bytes(colour_photo(0, 96, seed=43)), jpeg_bytes(colour_photo(2, 96, seed=44))
    app = run_app(monkeypatch, bundle, ("fish.jpg", crimson, "image/jpeg"))
    assert [h.value for h in app.subheader] == ["Crimson testfish"]
    before = shown_images(app)
    app.file_uploader[0].set_value(("fish.jpg", cobalt, "image/jpeg")).run()  # the same name, other bytes
    assert [h.value for h in app.subheader] == ["Cobalt testfish"]
    after = shown_images(app)  # a media URL is named by its image's bytes: the photo and its map are the new ones
    assert list(after) == list(before) == ["fish.jpg", "Where the model looked"]
    assert all(after[caption] != before[caption] for caption in after)
    assert app.dataframe[0].value[["path", "species"]].values.tolist() == [["fish.jpg", "Cobalt testfish"]]
    assert ours == [crimson, cobalt]  # a new file is hashed afresh, and the old one's digest forgotten
    assert list(app.session_state[app_uploads.DIGESTS_KEY].values()) == [hashlib.sha256(cobalt).hexdigest()]


def test_clicking_an_example_photo_identifies_it_like_an_upload_until_photos_are_uploaded(monkeypatch, bundle):
    app = run_app(monkeypatch, bundle)
    assert [button.label for button in app.button] == [c["display"] for c in COLOUR_CLASSES]
    assert len(app.get("image")) == len(COLOUR_CLASSES)  # the row of example photos
    assert "or try an example photo" in app.info[0].value

    app.button(key="example-1").click().run()
    assert [h.value for h in app.subheader] == ["Emerald testfish"]
    assert captions(app) == ["Example: Emerald testfish", "Where the model looked"]
    assert float(app.metric[0].value.rstrip("%")) > 99
    assert app.dataframe[0].value[["path", "species"]].values.tolist() == [["Example: Emerald testfish",
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

    assert list(csv["path"]) == ["cobalt.jpg", "empty.png"]
    assert csv.loc[0, "unknown"] == True and csv.loc[0, "unknown_score"] == 12.5  # noqa: E712 (a CSV cell)
    assert pd.isna(csv.loc[1, "unknown"]) and math.isnan(csv.loc[1, "unknown_score"])
    # An unknown photo names no species, only the closest one.
    assert pd.isna(csv.loc[0, "species"]) and csv.loc[0, "closest_species"] == "Cobalt testfish"
    assert pd.isna(csv.loc[1, "species"]) and pd.isna(csv.loc[1, "closest_species"])
    assert csv.loc[0, "top_k"] == "test cobalt:0.8000; test crimson:0.1500"
    assert csv.loc[1, "error"] == "file is empty (0 bytes)" and pd.isna(csv.loc[0, "error"])
    assert math.isnan(csv.loc[1, "confidence"])


def test_a_doubted_catch_all_answer_says_it_may_be_a_known_species_photographed_elsewhere(app_module):
    other = Prediction(source="a", label="animal fish", display_name="Animal fish", confidence=0.99,
                       top_k=[("animal fish", "Animal fish", 0.99), ("fish sea_food trout", "Trout", 0.01)],
                       is_low_confidence=True, doubted=True)
    assert app_module.low_confidence_message(other, 11) == (
        "Low confidence: Animal fish is the model's answer for any fish it cannot place, and this photo may still be "
        "one of the 11 known species photographed outside a market (the closest: Trout): the model learned them from "
        "market photos only. Check it by eye.")
    unsure = Prediction(source="b", label="test cobalt", display_name="Cobalt testfish", confidence=0.3,
                        is_low_confidence=True)
    assert app_module.low_confidence_message(unsure, 11) == (
        "Low confidence: this photo may not be one of the 11 known species. Check it by eye.")


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


HOSTILE_NAMES = [
    "[click me](https:evil.example).jpg",  # a link
    "$x^2$.jpg",  # LaTeX
    "www.evil.example.jpg",  # an autolink
    "reef_*shot*_~~5~~.jpg",  # emphasis, strikethrough
    ":red[alarm] :fish: :material/home:.jpg",  # Streamlit's colour, emoji and icon shortcodes
    "# heading <img src=x onerror=alert(1)> | table |.jpg",
    "![image](x) \\ back`tick``s.jpg",
    "line\nbreak\tand tab.jpg",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_literal_escapes_every_punctuation_mark_and_shows_the_text_as_typed(app_module, name):
    escaped = app_module.literal(name)
    # Every ASCII punctuation mark escaped (CommonMark's rule for showing one as itself), no control character.
    assert re.fullmatch(r"(?:\\[!-/:-@\[-`{-~]|[^!-/:-@\[-`{-~\x00-\x1f])*", escaped), escaped
    assert as_shown(escaped) == name.replace("\n", " ").replace("\t", " ")


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_file_label_is_one_code_span_holding_the_name(app_module, name):
    label = app_module.file_label(name)
    fence = re.match("`+", label).group()
    # A code span's text is never markup; its fence is longer than any run of backticks in the name.
    assert label.endswith(" " + fence) and all(len(run) < len(fence) for run in re.findall("`+", name))
    assert label[len(fence) + 1 : -len(fence) - 1] == name.replace("\n", " ").replace("\t", " ")


def test_the_csv_download_quotes_cells_a_spreadsheet_would_run_and_keeps_the_names(app_module):
    names = ['=HYPERLINK("evil.example";"x").jpg', "+1 reef.jpg", "-2.jpg", "@home.jpg", "plain.jpg"]
    prediction = Prediction(source="a", label="test cobalt", display_name="Cobalt testfish", confidence=0.8,
                            top_k=[("test cobalt", "Cobalt testfish", 0.8)])
    table = app_module.results_table([(name, prediction) for name in names])
    csv = pd.read_csv(io.StringIO(app_module.csv_text(table)))
    assert csv["path"].tolist() == ["'" + name for name in names[:4]] + ["plain.jpg"]
    assert csv["species"].tolist() == ["Cobalt testfish"] * 5 and csv["confidence"].tolist() == [0.8] * 5
    assert table["path"].tolist() == names  # the table on the page shows the names as typed


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
