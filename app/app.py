"""Fish species from photos: upload (or pick an example), predict, explain.

Run from the repo root with `streamlit run app/app.py`. The deploy bundle comes
from $FISH_BUNDLE (default models/deploy, which `dvc repro` produces); a relative
path is taken from the repo root. Every class name comes from the bundle.
"""

import functools
import os
import re
from pathlib import Path
from typing import Callable

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image, ImageOps

from fish_classifier.images import IMAGE_EXTENSIONS, ImageError, open_rgb
from fish_classifier.serving.bundle import DEFAULT_BUNDLE_DIR, BundleError, Example
from fish_classifier.serving.predictor import Prediction, Predictor

REPO_ROOT = Path(__file__).resolve().parents[1]
DISPLAY_SIZE = 480  # longest side of the photo sent to the browser, in pixels
MAX_FILES = 20  # photos identified per upload: each is decoded and run, so a batch must stay small
HEATMAP_OPACITY = 0.6  # at the hottest spot
EXAMPLE_COLUMNS = 8  # at least this many columns in the example row, so that a few examples stay thumbnails
EXAMPLE_KEY = "example"  # session state: the index of the example photo last clicked, until the uploads change
SHOWN_METRICS = {
    "accuracy": "Accuracy",
    "macro_f1": "Macro F1",
    "macro_precision": "Macro precision",
    "macro_recall": "Macro recall",
}


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


# `data` keys both caches; `_photo` (not hashed) decodes it only on a miss. Predictions are small.
@st.cache_data(show_spinner=False, max_entries=500)
def predict_upload(
    _predictor: Predictor, bundle_key: str, data: bytes, threshold: float, _photo: Callable[[], Image.Image]
) -> Prediction:
    # Cached so that moving a widget does not re-run the model on every photo.
    try:
        image = _photo()
    except ImageError:
        image = data  # the Predictor words the refusal, as it does for the CLI
    return _predictor.predict([image], threshold=threshold)[0]


# At most two images of DISPLAY_SIZE (1.4 MB) an entry: a batch with and without heatmaps, under 60 MB.
@st.cache_data(show_spinner=False, max_entries=2 * MAX_FILES)
def result_images(
    _predictor: Predictor, bundle_key: str, data: bytes, with_heatmap: bool, _photo: Callable[[], Image.Image]
) -> tuple[Image.Image, Image.Image | None]:
    """The photo scaled for display, and (if asked) the same photo under the predicted class's activation map."""
    photo = _photo()
    shown = ImageOps.contain(photo, (DISPLAY_SIZE, DISPLAY_SIZE)) if max(photo.size) > DISPLAY_SIZE else photo
    if not with_heatmap:
        return shown, None
    return shown, heatmap_overlay(shown, _predictor.class_activation_map(photo))


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
    """One row per uploaded file: the prediction, its top-k, or why the file could not be read."""
    rows = []
    for name, prediction in results:
        row = {
            "file": name,
            "species": prediction.display_name,
            "label": prediction.label,
            "confidence": prediction.confidence,
            "low_confidence": None if prediction.error else prediction.is_low_confidence,
            "unknown": None if prediction.error else prediction.is_unknown,
            "unknown_score": prediction.unknown_score,
            "error": prediction.error or "",
        }
        for rank, (_, display, probability) in enumerate(prediction.top_k, start=1):
            row[f"top{rank}_species"] = display
            row[f"top{rank}_probability"] = probability
        rows.append(row)
    return pd.DataFrame(rows)


def literal(text: str) -> str:
    """`text` escaped so that Streamlit's markdown shows it as typed (file names may hold * _ $ ...)."""
    return re.sub(r"([\\`*_\[\]<>#|~$])", r"\\\1", text)


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
    metrics = test_metrics(predictor.info)
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
    unknown = predictor.info.get("unknown") or {}
    if unknown.get("figures"):
        flagged = unknown["figures"]["flagged"]
        sidebar.markdown(
            "**Unknown-photo check:** photos unlike every species are flagged, not named. "
            + "; ".join(f"{literal(group)}: {share:.1%} flagged" for group, share in flagged.items())
        )
    sidebar.markdown(f"**The {len(predictor.classes)} known species**")
    sidebar.markdown("\n".join(f"- {literal(c['display'])}" for c in predictor.classes))
    return threshold


def test_metrics(info: dict) -> dict[str, float]:
    """The headline test metrics present in bundle.json, by readable name."""
    metrics = info.get("metrics") or {}
    return {name: float(metrics[key]) for key, name in SHOWN_METRICS.items() if key in metrics}


def show_result(
    name: str, prediction: Prediction, photo: Image.Image, heatmap: Image.Image | None, n_classes: int,
    unknown_threshold: float | None = None,
) -> None:
    """One photo: itself (and where the model looked), its species, confidence and top-k.

    An unknown photo gets no species: a plain message, and the closest species muted, for reference only."""
    if prediction.is_unknown:
        show_unknown(name, prediction, photo, n_classes, unknown_threshold)
        return
    with st.container(border=True):
        columns = st.columns([1, 1, 1.3] if heatmap is not None else [1, 1.3])
        columns[0].image(photo, caption=name, width="stretch")
        if heatmap is not None:
            columns[1].image(heatmap, caption="Where the model looked", width="stretch")
        verdict = columns[-1]
        verdict.subheader(literal(prediction.display_name))
        verdict.metric("Confidence (calibrated)", f"{prediction.confidence:.1%}")
        if prediction.is_low_confidence:
            verdict.warning(
                f"Low confidence: this photo may not be one of the {n_classes} known species. Check it by eye."
            )
        verdict.altair_chart(top_k_chart(prediction), width="stretch", height=40 * len(prediction.top_k) + 60)


def show_unknown(name: str, prediction: Prediction, photo: Image.Image, n_classes: int,
                 threshold: float | None) -> None:
    with st.container(border=True):
        columns = st.columns([1, 1.3])
        columns[0].image(photo, caption=name, width="stretch")
        verdict = columns[1]
        verdict.subheader("Not a known fish")
        limit = "" if threshold is None else f", above the threshold of {threshold:.4g}"
        verdict.warning(
            f"This photo does not look like any of the {n_classes} species this model knows "
            f"(unknown-photo score {prediction.unknown_score:.4g}{limit}), so it gets no species. "
            "If it is a fish, it is probably one the model was not trained on."
        )
        closest = ", ".join(f"{literal(display)} {probability:.0%}" for _, display, probability in prediction.top_k[:3])
        verdict.caption(f"Closest species, not an answer: {closest}")


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
        tile.button(example.display, key=f"example-{index}", width="stretch", on_click=choose_example, args=(index,))
    chosen = st.session_state.get(EXAMPLE_KEY)
    # A rebuilt bundle may have fewer examples than the one the index was chosen from.
    return examples[chosen] if chosen is not None and chosen < len(examples) else None


def choose_example(index: int) -> None:
    # Kept in the session, so that moving the slider or the toggle keeps the example's result on the page.
    st.session_state[EXAMPLE_KEY] = index


def forget_example() -> None:
    st.session_state.pop(EXAMPLE_KEY, None)


def identify(predictor: Predictor, bundle_key: str, name: str, data: bytes, threshold: float, with_heatmap: bool):
    """(name, prediction, photo to show, heatmap) for one file; no images for a file that cannot be read."""
    # One decoded photo at a time, for the model, the display and the heatmap alike.
    photo = decode_once(data, predictor.input_size)
    prediction = predict_upload(predictor, bundle_key, data, threshold, photo)
    if prediction.error:
        return name, prediction, None, None
    wants_heatmap = with_heatmap and not prediction.is_unknown
    return name, prediction, *result_images(predictor, bundle_key, data, wants_heatmap, photo)


def show_results_table(results: list[tuple[str, Prediction]]) -> None:
    """The results as a table on the page and as a CSV download, one row per photo."""
    table = results_table(results)
    shares = [column for column in table if column == "confidence" or column.endswith("_probability")]
    st.dataframe(table, hide_index=True,
                 column_config={column: st.column_config.NumberColumn(format="percent") for column in shares})
    st.download_button(
        f"Download the {len(results)} results as CSV",
        table.to_csv(index=False),
        file_name="fish_predictions.csv",
        mime="text/csv",
    )


def main() -> None:
    st.set_page_config(page_title="Fish species classifier", page_icon="🐟", layout="wide")
    st.title("Fish species classifier")
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
        on_change=forget_example,
    )
    example = show_examples(predictor.bundle.examples)
    if not uploads and example is None:
        also = ", or try an example photo" if predictor.bundle.examples else ""
        st.info(f"Upload one or more photos ({', '.join(IMAGE_EXTENSIONS)}){also}.")
        return
    if len(uploads) > MAX_FILES:
        st.error(
            f"{len(uploads)} photos chosen, but the app identifies at most {MAX_FILES} at a time: "
            f"the first {MAX_FILES} are shown below. Upload the other {len(uploads) - MAX_FILES} in another batch."
        )
        uploads = uploads[:MAX_FILES]
    # Each file's bytes are read when its turn comes: a batch of large uploads is never copied whole at once.
    photos = [(upload.name, upload.getvalue) for upload in uploads]
    if example is not None:
        photos.insert(0, (f"Example: {example.display}", example.path.read_bytes))

    with st.spinner("Identifying…"):
        results = [identify(predictor, bundle_key, name, read(), threshold, with_heatmap) for name, read in photos]
    show_results_table([(name, prediction) for name, prediction, _, _ in results])
    for name, prediction, photo, heatmap in results:
        if prediction.error:
            st.error(f"**{literal(name)}**: {literal(prediction.error)}")
        else:
            show_result(name, prediction, photo, heatmap, n_classes, unknown_threshold)


if __name__ == "__main__":
    main()
