"""What the feedback store holds: its two tables, a record as the store hands it out, and the checks a record
passes before it is written.

- `photos`: one row per upload, keyed by the sha256 of the bytes the user sent, holding the photo
  re-encoded as a JPEG with no metadata (EXIF GPS positions of fishing grounds are sensitive).
- `feedback`: one row per mark (a label, what the model said, the bundle's version, the time, a review
  status), keyed by an id the caller makes, so that a retried save is the same row, never a second one.
"""

import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

from fish_classifier.feedback import STATUSES

NOT_FISH = "not-fish"  # the label for "this photo is no fish", and its export folder
_RECORD_ID = re.compile(r"[0-9a-f]{32}")

metadata = MetaData()
photos_table = Table(
    "photos", metadata,
    Column("sha256", String(64), primary_key=True),  # of the bytes the user uploaded, not of the JPEG below
    Column("jpeg", LargeBinary, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
feedback_table = Table(
    "feedback", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # the order records were written in
    Column("id", String(32), nullable=False, unique=True),
    Column("photo_sha256", String(64), ForeignKey("photos.sha256"), nullable=False, index=True),
    Column("label", String(200), nullable=False),
    Column("model_label", String(200), nullable=False),
    Column("model_confidence", Float, nullable=False),
    Column("model_unknown", Boolean, nullable=False),
    Column("model_unknown_score", Float, nullable=True),
    Column("bundle_version", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    CheckConstraint(f"status IN ({', '.join(repr(s) for s in STATUSES)})", name="feedback_status"),
)


class FeedbackError(Exception):
    """Bad input to the store (a label, an id, a photo, a URL); the one-line message says what to do."""


class StoreUnavailable(FeedbackError):
    """The store cannot be reached or written (server down, disk full, read-only file)."""


@dataclass(frozen=True)
class ModelAnswer:
    """What the model said about the photo."""

    label: str  # its top species (the closest species when the photo is unknown)
    confidence: float  # calibrated
    unknown: bool
    unknown_score: float | None

    @classmethod
    def of(cls, prediction) -> "ModelAnswer":
        """What a serving `Prediction` said (its unknown score is nan from a bundle with no detector: None here)."""
        score = prediction.unknown_score
        return cls(prediction.label, prediction.confidence, prediction.is_unknown,
                   None if math.isnan(score) else score)


@dataclass(frozen=True)
class Record:
    id: str  # uuid4 hex
    photo_sha256: str
    label: str  # a species label or NOT_FISH
    model: ModelAnswer
    bundle_version: str
    created_at: datetime  # UTC
    status: str


def new_record_id() -> str:
    """An id for FeedbackStore.add(): made once per mark by the caller, so a retried save writes the same row."""
    return uuid.uuid4().hex


def record_from_row(row) -> Record:
    """The Record of a `feedback` row (a database row, or the dict that was inserted)."""
    row = row._mapping if hasattr(row, "_mapping") else row
    created = row["created_at"]
    created = created.replace(tzinfo=timezone.utc) if created.tzinfo is None else created.astimezone(timezone.utc)
    model = ModelAnswer(row["model_label"], row["model_confidence"], bool(row["model_unknown"]),
                        row["model_unknown_score"])
    return Record(row["id"], row["photo_sha256"], row["label"], model, row["bundle_version"], created, row["status"])


def check_mark(label: str, model: ModelAnswer, bundle_version: str, record_id: str, species: list[str]) -> None:
    """Refuse a mark the store would not keep: a label or model answer outside `species`, no version, a bad id."""
    _check_label(label, species)
    _check_model(model, species)
    if not isinstance(bundle_version, str) or not bundle_version.strip():
        raise FeedbackError("bundle_version is empty; pass the deploy bundle's version or hash")
    if not isinstance(record_id, str) or not _RECORD_ID.fullmatch(record_id):
        raise FeedbackError(f"record id {record_id!r} is not 32 lowercase hex digits; make one with new_record_id()")


def check_status(status: str) -> None:
    if status not in STATUSES:
        raise FeedbackError(f"status {status!r} is not one of: {', '.join(STATUSES)}")


def _check_label(label: str, species: list[str]) -> None:
    if not species:
        raise FeedbackError("no species given; pass the deploy bundle's labels as species=")
    if NOT_FISH in species:
        raise FeedbackError(f"{NOT_FISH!r} is a species of the bundle, and it is the store's label for no fish")
    if label not in species and label != NOT_FISH:
        raise FeedbackError(f"label {label!r} is not a species; expected one of: {', '.join(species)}, {NOT_FISH}")


def _check_model(model: ModelAnswer, species: list[str]) -> None:
    if not isinstance(model, ModelAnswer):
        raise FeedbackError(f"model must be a ModelAnswer, got {type(model).__name__}")
    if model.label not in species:
        raise FeedbackError(f"the model's label {model.label!r} is not a species; expected one of: {', '.join(species)}")
    if not (isinstance(model.confidence, (int, float)) and 0 <= model.confidence <= 1):
        raise FeedbackError(f"the model's confidence {model.confidence!r} is not a number between 0 and 1")
    score = model.unknown_score
    if score is not None and not (isinstance(score, (int, float)) and math.isfinite(score)):
        raise FeedbackError(f"the model's unknown score {score!r} is not a finite number (or None)")
