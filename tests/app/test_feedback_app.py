"""The app's feedback (app/feedback.py) through Streamlit's AppTest: what a mark saves in a temporary SQLite
store, what the page shows then, the switch, and a store that cannot be written."""

import hashlib
import io
from types import SimpleNamespace

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest
from support import REPO_ROOT
from support.app_bundles import build_colour_bundle, colour_photo, jpeg_bytes, text_photo

import feedback as app_feedback  # app/feedback.py, app/uploads.py (tests/app/conftest.py puts app/ on sys.path)
import uploads as app_uploads
from fish_classifier.feedback.store import NOT_FISH, FeedbackStore

APP = REPO_ROOT / "app" / "app.py"
CRIMSON = jpeg_bytes(colour_photo(0, 96, seed=31))
COBALT = jpeg_bytes(colour_photo(2, 96, seed=32))
RECEIPT = jpeg_bytes(text_photo("receipt #1234"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return build_colour_bundle(tmp_path_factory.mktemp("bundle") / "deploy")


@pytest.fixture
def store_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'feedback' / 'feedback.db'}"
    monkeypatch.setenv("FISH_FEEDBACK_URL", url)
    monkeypatch.delenv("FISH_FEEDBACK", raising=False)
    return url


def run_app(monkeypatch, bundle_dir, uploads) -> AppTest:
    monkeypatch.setenv("FISH_BUNDLE", str(bundle_dir))
    app = AppTest.from_file(str(APP), default_timeout=120)
    app.run()
    app.file_uploader[0].set_value(uploads).run()
    assert not app.exception, [e.value for e in app.exception]
    return app


def widgets(app: AppTest, prefix: str) -> list:
    """The feedback widgets whose key starts with `prefix`, in page order."""
    return [w for w in [*app.button, *app.selectbox] if (w.key or "").startswith(prefix)]


def feedback_widgets(app: AppTest) -> list:
    return widgets(app, "feedback-")


def records(url: str):
    with FeedbackStore(url) as store:
        return store.records()


def stored_photo(url: str, sha256: str) -> bytes:
    with FeedbackStore(url) as store:
        return store.photo(sha256)


def test_marking_an_answer_wrong_saves_one_record_with_the_models_answer_and_the_bundles_version(
        monkeypatch, bundle, store_url):
    app = run_app(monkeypatch, bundle, ("crimson.jpg", CRIMSON, "image/jpeg"))
    assert app.subheader[0].value == "Crimson testfish"
    assert "keeps the photo to improve the model" in app.caption[0].value
    [wrong] = widgets(app, "feedback-wrong-")
    assert wrong.placeholder == "Wrong: it is …"
    assert wrong.options == ["Emerald testfish", "Cobalt testfish"]  # by display name, the answer left out
    shown = app.dataframe[0].value.iloc[0]

    wrong.set_value("test cobalt").run()
    assert not app.exception and not app.warning
    assert [s.value for s in app.success] == ["Saved: wrong, it is Cobalt testfish."]
    assert feedback_widgets(app) == []  # not offered again for that photo
    assert app.subheader[0].value == "Crimson testfish"  # the answer stays

    [record] = records(store_url)
    assert record.label == "test cobalt" and record.status == "new"
    assert record.photo_sha256 == hashlib.sha256(CRIMSON).hexdigest()
    assert record.model.label == "test crimson" and record.model.unknown is False
    assert record.model.confidence == pytest.approx(shown["confidence"])
    assert record.model.unknown_score == pytest.approx(shown["unknown_score"])
    assert record.bundle_version == hashlib.sha256((bundle / "bundle.json").read_bytes()).hexdigest()[:12]
    assert Image.open(io.BytesIO(stored_photo(store_url, record.photo_sha256))).size == (96, 96)

    app.toggle[0].set_value(False).run()  # another run of the page: still saved once, still not offered
    assert [s.value for s in app.success] == ["Saved: wrong, it is Cobalt testfish."]
    assert len(records(store_url)) == 1


@pytest.mark.parametrize(("button", "saved"), [("feedback-right-", "Saved: right, Crimson testfish."),
                                               ("feedback-not-fish-", "Saved: not a fish.")])
def test_right_and_not_a_fish_save_the_answer_or_not_fish(monkeypatch, bundle, store_url, button, saved):
    app = run_app(monkeypatch, bundle, ("crimson.jpg", CRIMSON, "image/jpeg"))
    widgets(app, button)[0].click().run()
    assert [s.value for s in app.success] == [saved]
    [record] = records(store_url)
    assert record.label == ("test crimson" if button == "feedback-right-" else NOT_FISH)
    assert record.model.label == "test crimson"


def test_an_unknown_photo_is_marked_right_not_a_fish_or_a_fish_of_a_species(monkeypatch, bundle, store_url):
    app = run_app(monkeypatch, bundle, [("receipt.jpg", RECEIPT, "image/jpeg"), ("crimson.jpg", CRIMSON, "image/jpeg"),
                                        ("cobalt.jpg", COBALT, "image/jpeg")])
    assert [h.value for h in app.subheader] == ["Not a known fish", "Crimson testfish", "Cobalt testfish"]
    [not_fish, *_] = widgets(app, "feedback-not-fish-")
    assert not_fish.label == "Right, not a fish" and len(widgets(app, "feedback-fish-")) == 1
    not_fish.click().run()
    [fish] = widgets(app, "feedback-wrong-")[:1]
    fish.set_value("test emerald").run()
    assert [s.value for s in app.success] == ["Saved: right, not a fish.", "Saved: wrong, it is Emerald testfish."]

    saved = records(store_url)
    assert [(r.label, r.model.unknown) for r in saved] == [(NOT_FISH, True), ("test emerald", False)]
    assert saved[0].photo_sha256 == hashlib.sha256(RECEIPT).hexdigest()
    assert saved[0].model.unknown_score > 0


def test_it_is_a_fish_saves_the_species_chosen_for_an_unknown_photo(monkeypatch, bundle, store_url):
    app = run_app(monkeypatch, bundle, ("receipt.jpg", RECEIPT, "image/jpeg"))
    [fish] = widgets(app, "feedback-fish-")
    assert fish.placeholder == "It is a fish: …" and fish.options == ["Crimson testfish", "Emerald testfish",
                                                                      "Cobalt testfish"]
    fish.set_value("test crimson").run()
    assert [s.value for s in app.success] == ["Saved: it is a fish, Crimson testfish."]
    assert [(r.label, r.model.unknown) for r in records(store_url)] == [("test crimson", True)]


def test_feedback_switched_off_shows_none_of_it(monkeypatch, bundle, store_url):
    monkeypatch.setenv("FISH_FEEDBACK", "0")
    app = run_app(monkeypatch, bundle, [("crimson.jpg", CRIMSON, "image/jpeg"), ("receipt.jpg", RECEIPT, "image/jpeg")])
    assert [h.value for h in app.subheader] == ["Crimson testfish", "Not a known fish"]
    assert feedback_widgets(app) == []
    assert not any("improve the model" in c.value for c in app.caption)


def test_an_example_photo_is_not_offered_for_feedback(monkeypatch, bundle, store_url):
    monkeypatch.setenv("FISH_BUNDLE", str(bundle))
    app = AppTest.from_file(str(APP), default_timeout=120)
    app.run()
    app.button(key="example-0").click().run()
    assert [h.value for h in app.subheader] == ["Crimson testfish"]
    assert feedback_widgets(app) == [] and not any("improve the model" in c.value for c in app.caption)


@pytest.mark.parametrize("bad_url", ["under-a-file", "nosuch://x"])
def test_a_store_that_cannot_be_written_gets_a_one_line_warning_and_the_answer_stays(monkeypatch, bundle, tmp_path,
                                                                                     store_url, bad_url):
    if bad_url == "under-a-file":
        (tmp_path / "a-file").write_text("not a folder")
        bad_url = f"sqlite:///{tmp_path / 'a-file' / 'feedback.db'}"
    monkeypatch.setenv("FISH_FEEDBACK_URL", bad_url)
    app = run_app(monkeypatch, bundle, ("crimson.jpg", CRIMSON, "image/jpeg"))
    widgets(app, "feedback-wrong-")[0].set_value("test cobalt").run()

    assert not app.exception
    [warning] = [w.value for w in app.warning]
    assert warning.startswith("Not saved: ") and warning.endswith("The answer above stands.") and "\n" not in warning
    assert ("a\\-file" if "a-file" in bad_url else "nosuch") in warning
    assert app.subheader[0].value == "Crimson testfish" and app.metric  # the answer stays
    assert not app.success and len(feedback_widgets(app)) == 3  # offered again
    assert widgets(app, "feedback-wrong-")[0].value is None

    monkeypatch.setenv("FISH_FEEDBACK_URL", store_url)  # the store fixed: the same mark saves, once
    widgets(app, "feedback-wrong-")[0].set_value("test cobalt").run()
    assert [s.value for s in app.success] == ["Saved: wrong, it is Cobalt testfish."] and not app.warning
    assert [r.label for r in records(store_url)] == ["test cobalt"]


def test_one_photo_twice_in_a_batch_is_marked_once_and_a_session_marks_at_most_its_cap(monkeypatch, bundle,
                                                                                      store_url):
    monkeypatch.setattr(app_feedback, "MAX_MARKS", 2)
    emerald = jpeg_bytes(colour_photo(1, 96, seed=33))
    app = run_app(monkeypatch, bundle, [("crimson.jpg", CRIMSON, "image/jpeg"), ("again.jpg", CRIMSON, "image/jpeg"),
                                        ("cobalt.jpg", COBALT, "image/jpeg"), ("emerald.jpg", emerald, "image/jpeg")])
    assert len(widgets(app, "feedback-right-")) == 4
    widgets(app, "feedback-right-")[1].click().run()  # the second copy: both copies are that photo, saved
    assert [s.value for s in app.success] == ["Saved: right, Crimson testfish."] * 2
    widgets(app, "feedback-right-")[0].click().run()  # cobalt, the second photo marked: the cap
    assert len(app.success) == 3 and feedback_widgets(app) == []
    assert [c.value for c in app.caption if "as many as" in c.value] == [
        "This browser session has marked 2 photos, as many as one session may."]
    assert [r.label for r in records(store_url)] == ["test crimson", "test cobalt"]


def test_a_mark_saves_the_uploads_one_digest_hashed_once_however_often_the_page_runs(monkeypatch, bundle, store_url):
    hashed = []

    def sha256(data):
        hashed.append(bytes(data))
        return hashlib.sha256(data)

    monkeypatch.setattr(app_uploads, "hashlib", SimpleNamespace(sha256=sha256))  # the one place an upload is hashed
    app = run_app(monkeypatch, bundle, [("crimson.jpg", CRIMSON, "image/jpeg"), ("cobalt.jpg", COBALT, "image/jpeg")])
    app.toggle[0].set_value(False).run()  # two more runs of the page, the uploads unchanged
    app.run()
    assert hashed == [CRIMSON, COBALT]
    widgets(app, "feedback-right-")[0].click().run()
    assert [s.value for s in app.success] == ["Saved: right, Crimson testfish."]
    assert records(store_url)[0].photo_sha256 == hashlib.sha256(CRIMSON).hexdigest()
    assert hashed == [CRIMSON, COBALT]  # the mark took the page's digest, not one of its own

    app.file_uploader[0].set_value(("cobalt.jpg", COBALT, "image/jpeg")).run()  # new: hashed, the rest forgotten
    assert hashed == [CRIMSON, COBALT, COBALT]
    assert list(app.session_state[app_uploads.DIGESTS_KEY].values()) == [hashlib.sha256(COBALT).hexdigest()]


def test_the_bundle_version_is_the_start_of_bundle_json_s_sha256(bundle):
    expected = hashlib.sha256((bundle / "bundle.json").read_bytes()).hexdigest()[:12]
    assert app_feedback.bundle_version(str(bundle), 1) == expected
    assert len(expected) == 12


def test_the_app_opens_its_store_with_a_short_connect_timeout(monkeypatch):
    opened = {}
    monkeypatch.setattr(app_feedback, "FeedbackStore", lambda url, **options: opened.update(url=url, **options))
    app_feedback.open_store.clear()  # the cache would hold the fake store past this test otherwise
    try:
        app_feedback.open_store("postgresql://fish@db/feedback")
    finally:
        app_feedback.open_store.clear()
    assert opened == {"url": "postgresql://fish@db/feedback", "connect_timeout_s": app_feedback.CONNECT_TIMEOUT_S}


@pytest.mark.parametrize(("value", "on"), [(None, True), ("1", True), ("0", False), ("off", False), ("false", False)])
def test_the_switch(monkeypatch, value, on):
    if value is None:
        monkeypatch.delenv("FISH_FEEDBACK", raising=False)
    else:
        monkeypatch.setenv("FISH_FEEDBACK", value)
    assert app_feedback.enabled() is on
