"""Fish species from photos: upload (or pick an example), predict, explain.

Run from the repo root with `streamlit run app/app.py`. The deploy bundle comes
from $FISH_BUNDLE (default models/deploy, which `dvc repro` produces); a relative
path is taken from the repo root. Every class name comes from the bundle.
"""

import functools
import logging
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image
from streamlit.runtime.scriptrunner import get_script_run_ctx

from fish_classifier.images import IMAGE_EXTENSIONS, ImageError, open_rgb
from fish_classifier.serving.bundle import DEFAULT_BUNDLE_DIR, BundleError, Example, HeadlineMetrics
from fish_classifier.serving.prediction_row import COLUMNS, SHARE_COLUMNS, closest_species, csv_cells, prediction_row
from fish_classifier.serving.predictor import Prediction, Predictor
# The app's own modules, beside this file: `streamlit run` puts the script's folder on sys.path.
import feedback
from markup import file_label, literal
from uploads import (
    MAX_FILES,
    SERVER_UPLOAD_MB,
    SESSION_UPLOAD_MB,
    batch_length,
    batch_notice,
    keep_digests,
    release_memory,
    size_text,
    upload_budget,
    upload_digest,
)

LOGGER = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
DISPLAY_SIZE = 480  # longest side of the photo sent to the browser, in pixels
MAX_SHOWN_RATIO = 2  # a thinner photo is shown padded to this ratio, not stretched into a column miles tall
IDENTIFY_SLOTS = 2  # photos decoded and run at once across all sessions: their decoded pixels are the big part
HEATMAP_OPACITY = 0.6  # at the hottest spot
EXAMPLE_COLUMNS = 8  # at least this many columns in the example row, so that a few examples stay thumbnails
EXAMPLE_KEY = "example"  # session state: the index of the example photo last clicked, until the uploads change
REFUSED_KEY = "refused"  # session state: (name, bytes, cap) of the uploads refused, until the uploads change


def bundle_dir() -> Path:
    path = Path(os.environ.get("FISH_BUNDLE") or DEFAULT_BUNDLE_DIR)
    return path if path.is_absolute() else REPO_ROOT / path


def bundle_version(directory: Path) -> int:
    """The newest modification time in the bundle, so that a rebuilt bundle gets a fresh cache entry."""
    paths = [directory, *directory.iterdir()] if directory.is_dir() else []
    return max((path.stat().st_mtime_ns for path in paths), default=0)


@st.cache_resource(show_spinner="Loading the model…", max_entries=1)
def load_predictor(directory: str, version: int) -> Predictor:
    # `version` only keys the cache: one loaded model, replaced when the bundle changes.
    return Predictor(directory)


def decode_once(data: bytes, size: int) -> Callable[[], Image.Image]:
    """`open_rgb(data, size)` on first call and the same image after: an upload is decoded at most once a run,
    near the size the model reads (as the Predictor would decode it), and not at all when its results are cached."""
    return functools.cache(lambda: open_rgb(data, size))


# The photo's sha256 (`digest`) keys the three caches: Streamlit hashes every argument not named with a leading
# underscore on every call, and a photo's bytes, hashed there, cost a pass over megabytes per cache per run.
# `_data` and `_photo` (not hashed) are the bytes and their decoding, used only on a miss. Predictions are small.
@st.cache_data(show_spinner=False, max_entries=500)
def predict_upload(
    _predictor: Predictor, bundle_key: str, digest: str, threshold: float, _data: bytes,
    _photo: Callable[[], Image.Image],
) -> Prediction:
    # Cached so that moving a widget does not re-run the model on every photo.
    try:
        image = _photo()
    except ImageError:
        image = _data  # the Predictor words the refusal, as it does for the CLI
    return _predictor.predict([image], threshold=threshold)[0]


# An image of DISPLAY_SIZE (0.7 MB) an entry: a batch's photos and its heatmaps, under 30 MB each.
@st.cache_data(show_spinner=False, max_entries=MAX_FILES)
def display_photo(digest: str, _photo: Callable[[], Image.Image]) -> Image.Image:
    """The photo as the page shows it: scaled to fit DISPLAY_SIZE, a very thin one padded (see `framed`)."""
    return framed(scaled_to_display(_photo()))


@st.cache_data(show_spinner=False, max_entries=MAX_FILES)
def heatmap_photo(
    _predictor: Predictor, bundle_key: str, digest: str, _photo: Callable[[], Image.Image]
) -> Image.Image:
    """The displayed photo under the predicted class's activation map, padded like it."""
    photo = _photo()
    shown = scaled_to_display(photo)
    return framed(heatmap_overlay(shown, _predictor.class_activation_map(photo)))


def scaled_to_display(photo: Image.Image) -> Image.Image:
    """`photo` with its longest side at most DISPLAY_SIZE, and no side under a pixel (a 1×3000 strip stays 1 wide)."""
    scale = DISPLAY_SIZE / max(photo.size)
    if scale >= 1:
        return photo
    return photo.resize(tuple(max(1, round(side * scale)) for side in photo.size), Image.Resampling.BICUBIC)


def framed(image: Image.Image, ratio: float = MAX_SHOWN_RATIO) -> Image.Image:
    """`image` centred on a light canvas no thinner than `ratio`:1, so that the page shows it at a sane height."""
    width, height = image.size
    canvas = (max(width, -(-height // ratio)), max(height, -(-width // ratio)))
    if canvas == image.size:
        return image
    frame = Image.new("RGB", tuple(int(side) for side in canvas), (240, 242, 246))
    frame.paste(image, ((frame.width - width) // 2, (frame.height - height) // 2))
    return frame


# Matplotlib's "jet" as its own piecewise-linear segments (x, value) per channel, so that the serving image
# needs no matplotlib (about 70 MB with its fonts); tests/app/test_app.py checks it against matplotlib's.
JET_SEGMENTS = (
    ((0.0, 0.35, 0.66, 0.89, 1.0), (0.0, 0.0, 1.0, 1.0, 0.5)),  # red
    ((0.0, 0.125, 0.375, 0.64, 0.91, 1.0), (0.0, 0.0, 1.0, 1.0, 0.0, 0.0)),  # green
    ((0.0, 0.11, 0.34, 0.65, 1.0), (0.5, 1.0, 1.0, 0.0, 0.0)),  # blue
)


def jet(level: np.ndarray) -> np.ndarray:
    """RGB in [0, 1], shape (..., 3), for levels in [0, 1]: cold blue through green and yellow to hot red."""
    return np.stack([np.interp(level, xs, values) for xs, values in JET_SEGMENTS], axis=-1)


def heatmap_overlay(photo: Image.Image, cam: np.ndarray, opacity: float = HEATMAP_OPACITY) -> Image.Image:
    """Colour `photo` where a class activation map in [0, 1] is high (hot = red); cold areas stay as they are."""
    cam_image = Image.fromarray(np.uint8(np.clip(cam, 0.0, 1.0) * 255)).resize(photo.size, Image.Resampling.BILINEAR)
    level = np.asarray(cam_image, dtype=np.float64) / 255.0
    heat = Image.fromarray(np.uint8(jet(level) * 255))
    return Image.composite(heat, photo.convert("RGB"), Image.fromarray(np.uint8(level * opacity * 255)))


def results_table(results: list[tuple[str, Prediction]]) -> pd.DataFrame:
    """One `prediction_row` per uploaded file, named as uploaded: the same columns as `fish-classifier predict`'s CSV
    (an unknown photo's species empty, its closest species beside; a doubted catch-all answer, the closest species
    beside it; a file that could not be read, its error)."""
    return pd.DataFrame([prediction_row(prediction, source=name) for name, prediction in results], columns=COLUMNS)


def csv_text(table: pd.DataFrame) -> str:
    """`table` as the CSV download, cell for cell as the CLI writes it: every text cell a spreadsheet would run as
    a formula led by a `'` (a photo named `=HYPERLINK(...).jpg` is then text, and still names the file)."""
    return pd.DataFrame([csv_cells(row) for row in table.to_dict("records")], columns=table.columns).to_csv(index=False)


def load_or_explain(directory: Path, version: int) -> Predictor | None:
    """The predictor, or None after telling the user how to produce a bundle."""
    try:
        return load_predictor(str(directory), version)
    except BundleError as exc:
        problem = str(exc)
    except Exception as exc:  # a bundle that is there but does not load: explain it, no traceback
        problem = f"the deploy bundle in {directory} could not be loaded ({type(exc).__name__}: {exc})"
    st.error(f"No usable model: {literal(problem)}")
    st.info(
        "Produce the deploy bundle by running `dvc repro` in the repository root "
        "(or point the FISH_BUNDLE environment variable at a bundle folder), then reload this page."
    )
    return None


def show_model_card(predictor: Predictor) -> float:
    """The sidebar: which model, how it did on the test split, the species it knows. Returns the threshold."""
    sidebar = st.sidebar
    sidebar.header("Model card")
    sidebar.markdown(f"**Model:** {literal(predictor.model_name)}")
    metrics = test_metrics(predictor.bundle.metrics)
    if metrics:
        sidebar.markdown("**Test-set results**")
        sidebar.table(pd.DataFrame({"metric": list(metrics), "value": [f"{v:.1%}" for v in metrics.values()]}))
    threshold = sidebar.slider(
        "Confidence threshold",
        min_value=0.0,
        max_value=1.0,
        value=float(predictor.threshold),
        step=0.001,
        format="%.3f",
        help="Photos whose calibrated confidence is below this get a warning. "
        f"The bundle's default is {predictor.threshold:.3f}.",
    )
    unknown = predictor.bundle.unknown
    if unknown is not None and unknown.flagged:
        sidebar.markdown(
            "**Unknown-photo check:** photos unlike every species are flagged, not named. "
            + "; ".join(f"{literal(group)}: {share:.1%} flagged" for group, share in unknown.flagged.items())
        )
    sidebar.markdown(f"**The {len(predictor.classes)} known species**")
    sidebar.markdown("\n".join(f"- {literal(c['display'])}" for c in predictor.classes))
    return threshold


def test_metrics(metrics: HeadlineMetrics) -> dict[str, float]:
    """The headline test metrics the bundle has, by readable name."""
    shown = {"Accuracy": metrics.accuracy, "Macro F1": metrics.macro_f1, "Macro precision": metrics.macro_precision,
             "Macro recall": metrics.macro_recall}
    return {name: value for name, value in shown.items() if value is not None}


@dataclass
class Result:
    """One photo's answer and what the page shows of it."""

    name: str  # as uploaded: the table and the CSV
    label: str  # the name as markdown that shows it as typed: captions and messages
    prediction: Prediction
    photo: Image.Image | None = None
    heatmap: Image.Image | None = None
    notes: list[str] = field(default_factory=list)  # the parts of the result that could not be shown, and why
    decoded: bool = False  # whether this run decoded the photo (not all from the caches)
    upload: feedback.Upload | None = None  # an upload the budget accepted, which the user may mark; not an example


def show_result(result: Result, n_classes: int, unknown_threshold: float | None = None):
    """One photo: itself (and where the model looked), its species, confidence and top-k; returns its box.

    An unknown photo gets no species: a plain message, and the closest species muted, for reference only."""
    prediction = result.prediction
    if prediction.is_unknown:
        return show_unknown(result, n_classes, unknown_threshold)
    box = st.container(border=True)
    with box:
        columns = st.columns([1, 1, 1.3] if result.heatmap is not None else [1, 1.3])
        show_photo(columns[0], result)
        if result.heatmap is not None:
            columns[1].image(result.heatmap, caption="Where the model looked", width="stretch")
        verdict = columns[-1]
        verdict.subheader(literal(prediction.display_name))
        verdict.metric("Confidence (calibrated)", f"{prediction.confidence:.1%}")
        if prediction.is_low_confidence:
            verdict.warning(low_confidence_message(prediction, n_classes))
        verdict.altair_chart(top_k_chart(prediction), width="stretch", height=40 * len(prediction.top_k) + 60)
    return box


def low_confidence_message(prediction: Prediction, n_classes: int) -> str:
    """Why not to trust a low-confidence answer: a doubted catch-all answer (`Prediction.doubted`) may be a known
    species photographed outside the market, which the model never saw; any other may be no known species."""
    if prediction.doubted:
        closest = closest_species(prediction)
        return (f"Low confidence: {literal(prediction.display_name)} is the model's answer for any fish it cannot "
                f"place, and this photo may still be one of the {n_classes} known species photographed outside a "
                "market" + (f" (the closest: {literal(closest)})" if closest else "")
                + ": the model learned them from market photos only. Check it by eye.")
    return f"Low confidence: this photo may not be one of the {n_classes} known species. Check it by eye."


def show_unknown(result: Result, n_classes: int, threshold: float | None):
    prediction = result.prediction
    box = st.container(border=True)
    with box:
        columns = st.columns([1, 1.3])
        show_photo(columns[0], result)
        verdict = columns[1]
        verdict.subheader("Not a known fish")
        verdict.warning(unknown_message(prediction, n_classes, threshold))
        closest = ", ".join(f"{literal(display)} {probability:.0%}" for _, display, probability in prediction.top_k[:3])
        verdict.caption(f"Closest species, not an answer: {closest}")
    return box


def unknown_message(prediction: Prediction, n_classes: int, threshold: float | None) -> str:
    """Why a photo gets no species: it shows nothing to identify (too small, one flat colour), or it is
    unlike every species the model knows (the unknown-photo detector's score over its threshold)."""
    if prediction.unknown_reason:
        return f"No species: {literal(prediction.unknown_reason)}."
    limit = "" if threshold is None else f", above the threshold of {threshold:.4g}"
    return (f"This photo does not look like any of the {n_classes} species this model knows "
            f"(unknown-photo score {prediction.unknown_score:.4g}{limit}), so it gets no species. "
            "If it is a fish, it is probably one the model was not trained on.")


def show_photo(column, result: Result) -> None:
    """The photo under its name, or the name alone (and why) where the photo could not be drawn."""
    if result.photo is not None:
        column.image(result.photo, caption=result.label, width="stretch")
    else:
        column.markdown(result.label)
    for note in result.notes:
        column.caption(literal(note))


def top_k_chart(prediction: Prediction) -> alt.Chart:
    """Horizontal bars of the top-k probabilities, most likely first, on a fixed 0-100 % axis."""
    top = pd.DataFrame(
        {"species": [display for _, display, _ in prediction.top_k],
         "probability": [probability for _, _, probability in prediction.top_k]}
    )  # fmt: skip
    return (
        alt.Chart(top, title=f"Top {len(top)}")
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", title=None)),
            y=alt.Y("species:N", sort="-x", title=None),
            tooltip=["species", alt.Tooltip("probability:Q", format=".1%")],
        )
    )


def show_examples(examples: list[Example]) -> Example | None:
    """A row of the bundle's example photos, each with a button naming its species; returns the one last chosen."""
    if not examples:
        return None
    st.markdown("No photo at hand? Try one of these test photos, one per species:")
    for index, (column, example) in enumerate(zip(st.columns(max(len(examples), EXAMPLE_COLUMNS)), examples)):
        tile = column.container()  # in a container of its own, a long species name wraps instead of being cut short
        tile.image(str(example.path), width="stretch")
        tile.button(literal(example.display), key=f"example-{index}", width="stretch", on_click=choose_example,
                    args=(index,))
    chosen = st.session_state.get(EXAMPLE_KEY)
    # A rebuilt bundle may have fewer examples than the one the index was chosen from.
    return examples[chosen] if chosen is not None and chosen < len(examples) else None


def example_digest(predictor: Predictor, example: Example) -> str:
    """The example photo's sha256 as bundle.json lists it (checked against the file when the bundle loaded)."""
    bundle = predictor.bundle
    return bundle.spec.files[example.path.relative_to(bundle.path).as_posix()]


def choose_example(index: int) -> None:
    # Kept in the session, so that moving the slider or the toggle keeps the example's result on the page.
    st.session_state[EXAMPLE_KEY] = index


def uploads_changed() -> None:
    # New uploads replace the example's result, and the notice of uploads refused before them.
    st.session_state.pop(EXAMPLE_KEY, None)
    st.session_state.pop(REFUSED_KEY, None)


def identify(predictor: Predictor, bundle_key: str, name: str, label: str, data: bytes, digest: str,
             threshold: float, with_heatmap: bool) -> Result:
    """One file's Result, its bytes `data` of sha256 `digest`. Whatever fails stays this photo's: its error, or its
    result without the failing part."""
    # One decoded photo at a time, for the model, the display and the heatmap alike.
    photo = decode_once(data, predictor.input_size)
    try:
        prediction = predict_upload(predictor, bundle_key, digest, threshold, data, photo)
    except Exception as exc:  # the Predictor words the refusals it knows; anything else is this photo's too
        LOGGER.exception("identifying %r failed", name)
        prediction = Prediction(source=name, label=None, display_name=None, confidence=math.nan,
                                error=f"could not be identified ({type(exc).__name__})")
    result = Result(name, label, prediction)
    if not prediction.error:
        result.photo = attempt(result, "the photo could not be shown", display_photo, digest, photo)
        if with_heatmap and not prediction.is_unknown:
            result.heatmap = attempt(result, "no map of where the model looked, it could not be drawn",
                                     heatmap_photo, predictor, bundle_key, digest, photo)
    result.decoded = photo.cache_info().currsize > 0
    return result


def attempt(result: Result, what: str, draw: Callable, *args):
    """`draw(*args)`, or None with `what` noted on the result (its traceback in the server's log)."""
    try:
        return draw(*args)
    except Exception as exc:
        LOGGER.exception("%s: %r", what, result.name)
        result.notes.append(f"{what} ({type(exc).__name__}).")
        return None


def show_results_table(results: list[Result]) -> None:
    """The results as a table on the page and as a CSV download, one row per photo."""
    table = results_table([(result.name, result.prediction) for result in results])
    st.dataframe(table, hide_index=True,
                 column_config={column: st.column_config.NumberColumn(format="percent") for column in SHARE_COLUMNS})
    st.download_button(
        f"Download the {len(results)} results as CSV",
        csv_text(table),
        file_name="fish_predictions.csv",
        mime="text/csv",
    )


def refusal_notice(refused: list[tuple[str, int, str]]) -> str:
    """Which uploads the server refused, their size, and which cap they would have broken."""
    names = ", ".join(file_label(name) for name, _, _ in refused[:5])
    if len(refused) > 5:
        names += f" and {len(refused) - 5} more"
    caps = {cap for _, _, cap in refused}
    why = []
    if "session" in caps:
        why.append(f"one browser session holds at most {SESSION_UPLOAD_MB} MB of photos at a time")
    if "server" in caps:
        why.append(f"the server holds at most {SERVER_UPLOAD_MB} MB of photos for all its users at once, "
                   "and is full now: try again in a minute")
    size = size_text(sum(size for _, size, _ in refused))
    count = f"{len(refused)} photo{'s' * (len(refused) > 1)}"
    return (f"{count} not accepted ({names}; {size}): {', and '.join(why)}. Remove photos from the uploader "
            "(their ×) to make room, or identify these in another batch.")


@st.cache_resource(show_spinner=False)
def identify_slots() -> threading.BoundedSemaphore:
    return threading.BoundedSemaphore(IDENTIFY_SLOTS)


def main() -> None:
    st.set_page_config(page_title="Fish species classifier", page_icon="🐟", layout="wide")
    st.title("Fish species classifier")
    budget = upload_budget()  # before the uploader first shows, so that no upload comes in unbounded
    directory = bundle_dir()
    version = bundle_version(directory)
    predictor = load_or_explain(directory, version)
    if predictor is None:
        return
    bundle_key = f"{directory}@{version}"
    threshold = show_model_card(predictor)
    n_classes = len(predictor.classes)
    unknown_threshold = None if predictor.detector is None else predictor.detector.threshold
    with_heatmap = st.toggle("Show where the model looked (class activation map)", value=True)
    uploads = st.file_uploader(
        f"Photos of fish, to identify among the {n_classes} known species",
        type=[extension.lstrip(".") for extension in IMAGE_EXTENSIONS],
        accept_multiple_files=True,
        on_change=uploads_changed,
    )
    if budget is not None:
        refused = st.session_state.get(REFUSED_KEY, []) + budget.take_refused(get_script_run_ctx().session_id)
        st.session_state[REFUSED_KEY] = refused
        if refused:
            st.error(refusal_notice(refused))
    example = show_examples(predictor.bundle.examples)
    if not uploads and example is None:
        also = ", or try an example photo" if predictor.bundle.examples else ""
        st.info(f"Upload one or more photos ({', '.join(IMAGE_EXTENSIONS)}){also}.")
        return
    sizes = [upload.size for upload in uploads]
    kept = batch_length(sizes)
    if notice := batch_notice(sizes, kept):
        st.error(notice)
    # Each file's bytes are read when its turn comes: a batch of large uploads is never copied whole at once.
    # Only uploads the budget accepted (each with the uploader's id) may be marked: an example is one of the
    # bundle's own test photos.
    photos = [(upload.name, file_label(upload.name), upload.getvalue, upload.file_id) for upload in uploads[:kept]]
    if example is not None:
        photos.insert(0, (f"Example: {example.display}", f"Example: {literal(example.display)}",
                          example.path.read_bytes, None))

    keep_digests([upload.file_id for upload in uploads[:kept]])
    marking = feedback.enabled()
    results = []
    with st.spinner("Identifying…"):
        for name, label, read, upload_id in photos:
            with identify_slots():  # across all sessions: a bound on the photos decoded at once
                data = read()
                # An upload is hashed once, on the first run that shows it; an example's sha256 is bundle.json's.
                digest = example_digest(predictor, example) if upload_id is None else upload_digest(upload_id, data)
                results.append(identify(predictor, bundle_key, name, label, data, digest, threshold, with_heatmap))
            if marking and upload_id is not None:
                results[-1].upload = feedback.Upload(digest, read)
            del data
    if any(result.decoded for result in results):
        release_memory()
    show_results_table(results)
    marks = None
    if any(result.upload and not result.prediction.error for result in results):
        feedback.notice()
        marks = feedback.marking(predictor.classes, feedback.bundle_version(str(directory), version))
    for index, result in enumerate(results):
        if result.prediction.error:
            st.error(f"**{result.label}**: {literal(result.prediction.error)}")
            continue
        box = show_result(result, n_classes, unknown_threshold)
        if marks is not None and result.upload is not None:
            feedback.offer(box, result.upload, result.prediction, marks, key=f"{index}-{result.upload.sha256[:16]}")


if __name__ == "__main__":
    main()
