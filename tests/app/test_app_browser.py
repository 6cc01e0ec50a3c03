"""The app in a real browser: `streamlit run` on localhost, driven by Debian's headless Chromium via Selenium.

Screenshots go to test-artifacts/ (git-ignored; CI keeps them as artifacts).
"""

import hashlib
import io
import time
from pathlib import Path

import pytest
from browser_marks import choose_species, feedback_widgets, mark, wait_for_saved
from PIL import Image
from support.app_bundles import (
    COLOUR_CLASSES,
    DEV_ZIP,
    MOBILENET_WEIGHTS,
    build_colour_bundle,
    build_real_photo_bundle,
    colour_photo,
    display_name,
    jpeg_bytes,
    not_fish_photos,
    real_photos,
    text_photo,
)
from support.app_harness import (
    ARTIFACTS,
    CHROMIUM,
    UNKNOWN_HEADING,
    click,
    headless_chromium,
    markup_in_main,
    save_full_page_screenshot,
    streamlit_server,
    upload,
    wait_for_results,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"{CHROMIUM} not found: apt-get install chromium chromium-driver"
    ),
]
RESULT_TIMEOUT = 180  # seconds; the first page load imports TensorFlow and loads the model
GPS_IFD = 0x8825  # the Exif tag of the GPS block: where a photo was taken


@pytest.fixture(scope="module")
def browser():
    with headless_chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def colour_bundle(tmp_path_factory):
    return build_colour_bundle(tmp_path_factory.mktemp("colour") / "deploy")


def upload_and_wait(browser, url, good: Path, bad: Path, species: str, *more: Path) -> dict:
    """Upload `good`, `bad` and `more` in one batch; the page once it shows the species of one and the error
    of the other, and the results of `good` and `more` under their photos."""
    browser.get(url)
    upload(browser, [good, bad, *more], timeout=RESULT_TIMEOUT)
    return wait_for_results(browser, species, bad.name, photos=[path.name for path in (good, *more)],
                            timeout=RESULT_TIMEOUT)


def assert_unknown_shown(state: dict, n_species: int) -> None:
    assert state["headings"].count(UNKNOWN_HEADING) == 1
    [message] = [w for w in state["warnings"] if "does not look like any" in w]
    assert message.startswith(f"This photo does not look like any of the {n_species} species this model knows")


def error_for(state: dict, file_name: str) -> str:
    return next(error for error in state["errors"] if file_name in error)


def assert_full_result_shown(state: dict, caption: str) -> None:
    assert caption in state["captions"]  # the photo, under its name
    assert "Where the model looked" in state["text"]  # the heatmap overlay
    assert "Confidence (calibrated)" in state["text"]
    assert state["charts"] == 1  # the top-5 chart
    assert not [w for w in state["warnings"] if "may not be one of" in w]  # confident: no low-confidence warning


def test_a_good_photo_gets_its_species_and_a_bad_file_its_error_in_one_batch(browser, tmp_path, colour_bundle):
    good = tmp_path / "crimson-sample.jpg"
    good.write_bytes(jpeg_bytes(colour_photo(0, 256, seed=3)))
    bad = tmp_path / "field-notes.jpg"
    bad.write_bytes(b"these are field notes, not a photo\n")
    receipt = tmp_path / "receipt.jpg"  # a readable photo of something else: named as no species
    receipt.write_bytes(jpeg_bytes(text_photo("receipt #1234")))

    with streamlit_server(colour_bundle, tmp_path / "streamlit.log") as url:
        state = upload_and_wait(browser, url, good, bad, "Crimson testfish", receipt)
        assert "not a readable image" in error_for(state, bad.name)
        assert_full_result_shown(state, good.name)
        assert_unknown_shown(state, 3)
        shot = save_full_page_screenshot(browser, ARTIFACTS / "app-synthetic-bundle.png")
    assert shot.stat().st_size > 10_000


def test_clicking_an_example_photo_names_its_species(browser, tmp_path, colour_bundle):
    emerald = COLOUR_CLASSES[1]["display"]
    with streamlit_server(colour_bundle, tmp_path / "streamlit.log") as url:
        browser.get(url)
        click(browser, "example-1", timeout=RESULT_TIMEOUT)  # the second photo of the row, under its button
        state = wait_for_results(browser, emerald, photos=[f"Example: {emerald}"], timeout=RESULT_TIMEOUT)
        assert state["headings"] == [emerald]
        assert_full_result_shown(state, f"Example: {emerald}")
        save_full_page_screenshot(browser, ARTIFACTS / "app-example-photo.png")


@pytest.mark.slow
def test_a_real_fish_photo_is_named_correctly(browser, tmp_path):
    if not DEV_ZIP.is_file() or not MOBILENET_WEIGHTS.is_file():
        pytest.skip(f"real-photo check needs ../shared ({DEV_ZIP} and {MOBILENET_WEIGHTS.name}); not present")
    from fish_classifier.serving.predictor import Predictor

    labels = ["fish sea_food red_mullet", "fish sea_food shrimp", "fish sea_food trout"]
    bundle = build_real_photo_bundle(tmp_path / "deploy", labels)
    # A held-out test photo of the first species that this small model gets right.
    candidates = real_photos(labels[:1], "test", 10)
    predictions = Predictor(bundle).predict([data for _, data in candidates])
    right = [data for (label, data), p in zip(candidates, predictions) if p.label == label]
    assert len(right) >= 8, f"the test bundle got only {len(right)} of 10 red mullet test photos right"
    good = tmp_path / "red-mullet.jpg"
    good.write_bytes(right[0])
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(right[1][:2000])
    candidates = not_fish_photos(10)
    flagged = [data for (_, data), p in zip(candidates, Predictor(bundle).predict([d for _, d in candidates]))
               if p.is_unknown]
    assert len(flagged) >= 8, f"the test bundle flags only {len(flagged)} of 10 photos that are no fish"
    no_fish = tmp_path / "no-fish.jpg"
    no_fish.write_bytes(flagged[0])

    with streamlit_server(bundle, tmp_path / "streamlit.log") as url:
        state = upload_and_wait(browser, url, good, bad, display_name(labels[0]), no_fish)
        assert "truncated" in error_for(state, bad.name)
        assert_full_result_shown(state, good.name)
        assert_unknown_shown(state, len(labels))
        save_full_page_screenshot(browser, ARTIFACTS / "app-real-photo.png")


# Names a user may give a photo that markdown would render as something else: a link, an autolink, math,
# colour and emoji shortcodes, a spreadsheet formula. A name cannot hold "/", but '"' and ';' are fine.
HOSTILE_NAMES = [
    "[click me](https:evil.example).jpg",
    '=HYPERLINK("evil.example";"x").jpg',
    "$x^2$ www.evil.example.jpg",
    ":red[alarm] :fish: *bold* <img src=x onerror=alert(1)>.jpg",
]


def test_hostile_names_show_as_text_and_a_thin_photo_gets_its_own_answer_beside_a_good_one(browser, tmp_path,
                                                                                          colour_bundle):
    good = tmp_path / "crimson-sample.jpg"
    good.write_bytes(jpeg_bytes(colour_photo(0, 256, seed=3)))
    thin = tmp_path / "thin-strip.png"  # 1×3000: scaled for display, it used to be 0 pixels wide and sink the batch
    buffer = io.BytesIO()
    Image.new("RGB", (1, 3000), (210, 40, 50)).save(buffer, format="PNG")
    thin.write_bytes(buffer.getvalue())
    hostile = []
    for k, name in enumerate(HOSTILE_NAMES):
        hostile.append(tmp_path / name)
        hostile[-1].write_bytes(jpeg_bytes(colour_photo(k % 3, 96, seed=40 + k)))

    with streamlit_server(colour_bundle, tmp_path / "streamlit.log") as url:
        browser.get(url)
        upload(browser, [good, thin, *hostile], timeout=RESULT_TIMEOUT)
        state = wait_for_results(browser, "Crimson testfish", photos=[p.name for p in [good, thin, *hostile]],
                                 timeout=RESULT_TIMEOUT)
        markup = markup_in_main(browser)
        save_full_page_screenshot(browser, ARTIFACTS / "app-hostile-names.png")

    assert len(state["headings"]) == 2 + len(HOSTILE_NAMES), state["text"]  # each photo its answer, none an error
    assert not state["errors"], state["errors"]
    for path in [good, thin, *hostile]:
        # As typed (no emoji, colour or stray backslash), but for the '"' the browser sends as %22 (HTML's form rules).
        assert path.name.replace('"', "%22") in state["text"], path.name
    assert [href for href in markup["links"] if not href.startswith("#")] == []  # headings' own anchors only
    assert markup["katex"] == 0 and markup["emphasis"] == [] and markup["coloured"] == []
    assert markup["tallestImage"] < 1000  # the thin strip is shown padded, not stretched to the column's width


def gps_tagged_jpeg(image: Image.Image) -> bytes:
    """`image` as a JPEG whose Exif holds a camera make and the GPS position of a fishing ground."""
    exif = Image.Exif()
    exif[0x010F] = "FishPhone"  # Make
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (43.0, 17.0, 30.0), 3: "E", 4: (16.0, 26.0, 5.0)})
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, exif=exif)
    return buffer.getvalue()


# The page from the top of the first result's bordered box (the nearest ancestor of its photo drawn with a
# border) to the bottom of the second's, scrolled clear of Streamlit's header; its rectangle in the window.
_FIRST_TWO_RESULTS = """
const boxes = [];
for (const image of document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"]')) {
  let box = image;
  while (box.parentElement) {
    box = box.parentElement;
    const style = getComputedStyle(box);
    if (style.borderTopStyle !== 'none' && parseFloat(style.borderTopWidth) > 0) break;
  }
  if (box.parentElement && !boxes.includes(box)) boxes.push(box);
}
const main = document.querySelector('[data-testid="stMain"]');
boxes[0].scrollIntoView({block: 'start'});
main.scrollTop -= 70;
const first = boxes[0].getBoundingClientRect(), second = boxes[1].getBoundingClientRect();
return [first.left - 8, first.top - 8, first.right + 8, second.bottom + 8];
"""


def save_small_screenshot(driver, rectangle, path: Path, colours: int = 64) -> Path:
    """The window's `rectangle` as a PNG of at most `colours` colours: small enough to keep in the repository."""
    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    shot.crop(tuple(round(v) for v in rectangle)).quantize(colours, method=Image.Quantize.MEDIANCUT).save(
        path, optimize=True)
    return path


def test_marks_made_in_the_browser_land_in_the_store_and_the_photo_without_its_exif(browser, tmp_path, colour_bundle,
                                                                                    monkeypatch):
    from fish_classifier.feedback.store import NOT_FISH, FeedbackStore
    from fish_classifier.serving.predictor import Predictor

    url = f"sqlite:///{tmp_path / 'feedback' / 'feedback.db'}"
    monkeypatch.setenv("FISH_FEEDBACK_URL", url)  # streamlit_server passes the environment on
    monkeypatch.delenv("FISH_FEEDBACK", raising=False)
    crimson = tmp_path / "reef-with-gps.jpg"
    crimson.write_bytes(gps_tagged_jpeg(colour_photo(0, 256, seed=5)))
    assert Image.open(crimson).getexif().get_ifd(GPS_IFD)[1] == "N"  # the upload does carry a position
    cobalt = tmp_path / "cobalt.jpg"
    cobalt.write_bytes(jpeg_bytes(colour_photo(2, 256, seed=6)))
    receipt = tmp_path / "receipt.jpg"
    receipt.write_bytes(jpeg_bytes(text_photo("receipt #1234")))
    photos = [crimson, cobalt, receipt]

    with streamlit_server(colour_bundle, tmp_path / "streamlit.log") as app_url:
        browser.get(app_url)
        upload(browser, photos, timeout=RESULT_TIMEOUT)
        state = wait_for_results(browser, "Cobalt testfish", timeout=RESULT_TIMEOUT)
        assert state["headings"] == ["Crimson testfish", "Cobalt testfish", UNKNOWN_HEADING]
        assert "Marking an answer keeps the photo to improve the model" in state["text"]
        choose_species(browser, "wrong", 0, crimson, "Emerald testfish")
        assert wait_for_saved(browser, 1) == ["Saved: wrong, it is Emerald testfish."]
        time.sleep(0.5)  # the charts laid out
        # One answer marked, the next one still offered: docs/feedback-app.png is a copy of this.
        shot = save_small_screenshot(browser, browser.execute_script(_FIRST_TWO_RESULTS),
                                     ARTIFACTS / "feedback-app.png")
        mark(browser, "not-fish", 1, cobalt)
        wait_for_saved(browser, 2)
        mark(browser, "not-fish", 2, receipt)  # under "Not a known fish": "Right, not a fish"
        saved = wait_for_saved(browser, 3)
        state = wait_for_results(browser, "Cobalt testfish")
        offered = feedback_widgets(browser)
        save_full_page_screenshot(browser, ARTIFACTS / "app-feedback.png")

    assert saved == ["Saved: wrong, it is Emerald testfish.", "Saved: not a fish.", "Saved: right, not a fish."]
    assert not [warning for warning in state["warnings"] if "Not saved" in warning]
    assert offered == 0  # no mark offered any more for these photos
    assert 5_000 < shot.stat().st_size < 150_000

    predictions = Predictor(colour_bundle).predict([path.read_bytes() for path in photos])
    with FeedbackStore(url) as store:
        records = store.records()
        stored = store.photo(records[0].photo_sha256)
    assert [(r.label, r.model.label, r.model.unknown, r.status) for r in records] == [
        ("test emerald", "test crimson", False, "new"), (NOT_FISH, "test cobalt", False, "new"),
        (NOT_FISH, predictions[2].label, True, "new")]
    for record, prediction, path in zip(records, predictions, photos):
        assert record.photo_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert record.model.confidence == pytest.approx(prediction.confidence, abs=1e-4)
        assert record.model.unknown_score == pytest.approx(prediction.unknown_score, rel=1e-4)
    bundle_version = hashlib.sha256((colour_bundle / "bundle.json").read_bytes()).hexdigest()[:12]
    assert {record.bundle_version for record in records} == {bundle_version}
    # The photo kept: the same pixels' size, and no Exif at all (no GPS position, no camera).
    kept = Image.open(io.BytesIO(stored))
    assert kept.size == (256, 256) and not kept.getexif() and "exif" not in kept.info
    assert b"Exif" not in stored and b"FishPhone" not in stored
