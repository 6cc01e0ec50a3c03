"""Feedback under each answer: the user says whether it was right, and the photo is kept to improve the model.

Under a species: "Right", "Wrong: it is …" (another species) or "Not a fish"; under "Not a known fish":
"It is a fish: …" or "Right, not a fish". A mark is saved in the feedback store (fish_classifier.feedback.store,
at $FISH_FEEDBACK_URL), which keeps the photo without its metadata; the result then says what was saved and
offers nothing more for that photo. FISH_FEEDBACK=0 switches it all off. Saving never breaks the answer: a
store that is down or wrong gets a one-line warning under the photo, and the marks stay offered.
"""

import logging
import os
from dataclasses import dataclass
from typing import Callable

import streamlit as st

from fish_classifier.feedback.store import NOT_FISH, FeedbackError, FeedbackStore, ModelAnswer, new_record_id, store_url
from fish_classifier.serving.bundle import bundle_version as serving_bundle_version
from fish_classifier.serving.predictor import Prediction
from markup import literal
from uploads import MAX_FILES

LOGGER = logging.getLogger(__name__)
SWITCH_ENV = "FISH_FEEDBACK"  # "0": no feedback, the app shows none of it
CONNECT_TIMEOUT_S = 3  # a database server that does not answer costs a mark this long, not the store's default
MAX_MARKS = MAX_FILES  # photos one browser session may mark: a batch's worth
MARKED_KEY = "feedback-marked"  # session state: {photo sha256: what was saved}, the photos this session marked
RECORD_IDS_KEY = "feedback-record-ids"  # session state: {(sha256, label): record id}, so that a retry is one record
PROBLEMS_KEY = "feedback-problems"  # session state: {sha256: why its last mark was not saved}, shown once
NOTICE = ("Marking an answer keeps the photo to improve the model. Its location and other metadata (EXIF, "
          "GPS) are removed first; the file name is never kept.")


def enabled() -> bool:
    """Whether the app offers feedback: on unless FISH_FEEDBACK is 0 (or false, no, off)."""
    return os.environ.get(SWITCH_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class Upload:
    """A photo the upload budget accepted, as a mark saves it: the sha256 of its bytes (uploads.upload_digest, the
    one the page's caches are keyed by), and how to read them again (the uploader holds them; a mark reads them only
    when it is saved)."""

    sha256: str
    read: Callable[[], bytes]


@dataclass(frozen=True)
class Marking:
    """What every mark of this page saves beside its label: the bundle's species and version."""

    species: tuple[tuple[str, str], ...]  # (label, display name), in the bundle's order
    bundle_version: str

    def display(self, label: str) -> str:
        return dict(self.species).get(label, label)


@st.cache_data(show_spinner=False, max_entries=4)
def bundle_version(directory: str, modified: int) -> str:
    """The deploy bundle's version as feedback records it (serving.bundle.bundle_version: the start of its
    bundle.json's sha256). `modified`, the bundle's newest file time, only keys the cache."""
    return serving_bundle_version(directory)


def marking(classes: list[dict], version: str) -> Marking:
    return Marking(tuple((entry["label"], entry["display"]) for entry in classes), version)


def notice() -> None:
    st.caption(NOTICE)


def offer(place, photo: Upload, prediction: Prediction, marks: Marking, key: str) -> None:
    """Under one answer (in `place`): the marks it can get, or what was saved for its photo. `key` tells apart
    the widgets of the same photo uploaded twice in a batch."""
    marked = st.session_state.setdefault(MARKED_KEY, {})
    if photo.sha256 in marked:
        place.success(f"Saved: {marked[photo.sha256]}")
        return
    if len(marked) >= MAX_MARKS:
        place.caption(f"This browser session has marked {len(marked)} photos, as many as one session may.")
        return
    problem = st.session_state.get(PROBLEMS_KEY, {}).pop(photo.sha256, None)
    if problem:
        place.warning(problem)
    labels = [label for label, _ in marks.species]
    args = (photo, prediction, marks)
    columns = place.columns(3, vertical_alignment="bottom")
    if prediction.is_unknown:
        choice = f"feedback-fish-{key}"
        columns[0].selectbox("It is a fish: …", labels, index=None, format_func=marks.display,
                             placeholder="It is a fish: …", key=choice, label_visibility="collapsed",
                             on_change=save_choice, args=(choice, *args))
        columns[1].button("Right, not a fish", key=f"feedback-not-fish-{key}", on_click=save, args=(*args, NOT_FISH))
    else:
        choice = f"feedback-wrong-{key}"
        columns[0].button("Right", key=f"feedback-right-{key}", on_click=save, args=(*args, prediction.label))
        columns[1].selectbox("Wrong: it is …", [label for label in labels if label != prediction.label], index=None,
                             format_func=marks.display, placeholder="Wrong: it is …", key=choice,
                             label_visibility="collapsed", on_change=save_choice, args=(choice, *args))
        columns[2].button("Not a fish", key=f"feedback-not-fish-{key}", on_click=save, args=(*args, NOT_FISH))


def save_choice(choice: str, photo: Upload, prediction: Prediction, marks: Marking) -> None:
    """A species chosen from a list: saved; after a failed save the list is cleared, to be chosen again."""
    label = st.session_state.get(choice)
    if label is not None and not save(photo, prediction, marks, label):
        st.session_state[choice] = None


def save(photo: Upload, prediction: Prediction, marks: Marking, label: str) -> bool:
    """Keep `photo` with `label` in the store; whether it was saved. A failure is noted for the photo, one line."""
    marked = st.session_state.setdefault(MARKED_KEY, {})
    if photo.sha256 in marked:  # a browser may send a list's choice again after its photo was marked: once is all
        return True
    record_ids = st.session_state.setdefault(RECORD_IDS_KEY, {})
    record_id = record_ids.setdefault((photo.sha256, label), new_record_id())  # a retry is the same record
    answer = ModelAnswer.of(prediction)
    try:
        open_store(store_url()).add(photo.read(), label, answer, marks.bundle_version,
                                    species=[label for label, _ in marks.species], record_id=record_id)
    except FeedbackError as exc:  # its message says what is wrong, in a line
        LOGGER.warning("feedback not saved: %s", exc)
        problem = str(exc)
    except Exception as exc:  # whatever else: the answer stays, the traceback goes to the server's log
        LOGGER.exception("feedback not saved")
        problem = f"{type(exc).__name__}: {exc}"
    else:
        marked[photo.sha256] = saved_text(label, prediction, marks)
        return True
    st.session_state.setdefault(PROBLEMS_KEY, {})[photo.sha256] = (
        f"Not saved: {literal(one_line(problem))}. The answer above stands.")
    return False


def saved_text(label: str, prediction: Prediction, marks: Marking) -> str:
    """What a mark said, in the words of the button or choice that made it."""
    if label == NOT_FISH:
        return "right, not a fish." if prediction.is_unknown else "not a fish."
    species = literal(marks.display(label))
    if prediction.is_unknown:
        return f"it is a fish, {species}."
    return f"right, {species}." if label == prediction.label else f"wrong, it is {species}."


@st.cache_resource(show_spinner=False, max_entries=4)
def open_store(url: str) -> FeedbackStore:
    """The store at `url`, opened on the first mark and kept; one that fails to open is tried again next time."""
    return FeedbackStore(url, connect_timeout_s=CONNECT_TIMEOUT_S)


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
