"""The feedback store: photos users marked in the app, and what they said about them.

Two tables in any SQLAlchemy database (SQLite by default, PostgreSQL tested):

- `photos`: one row per upload, keyed by the sha256 of the bytes the user sent, holding the photo
  re-encoded as a JPEG with no metadata (EXIF GPS positions of fishing grounds are sensitive).
- `feedback`: one row per mark (a label, what the model said, the bundle's version, the time, a review
  status), keyed by an id the caller makes, so that a retried save is the same row, never a second one.

The serving image runs this module: it imports the standard library, numpy, Pillow and SQLAlchemy only.
"""

import hashlib
import io
import math
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image
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
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from fish_classifier.images import ImageError, open_rgb

NOT_FISH = "not-fish"  # the label for "this photo is no fish", and its export folder
STATUSES = ("new", "accepted", "rejected")
URL_ENV = "FISH_FEEDBACK_URL"  # the environment variable that names the store, for the app and the CLI
DEFAULT_URL = "sqlite:///feedback/feedback.db"  # relative to the working directory
MAX_PHOTO_BYTES = 20 * 2**20  # as the app's upload limit (.streamlit/config.toml, server.maxUploadSize = 20 MB)
MAX_RECORDS = 100_000
JPEG_QUALITY = 95
CONNECT_TIMEOUT_S = 10  # a PostgreSQL host that does not answer fails in this long, not the system's minutes
SQLITE_BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another's transaction before giving up
_RECORD_ID = re.compile(r"[0-9a-f]{32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")

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


@dataclass(frozen=True)
class ModelAnswer:
    """What the model said about the photo."""

    label: str  # its top species (the closest species when the photo is unknown)
    confidence: float  # calibrated
    unknown: bool
    unknown_score: float | None


@dataclass(frozen=True)
class Record:
    id: str  # uuid4 hex
    photo_sha256: str
    label: str  # a species label or NOT_FISH
    model: ModelAnswer
    bundle_version: str
    created_at: datetime  # UTC
    status: str


class FeedbackError(Exception):
    """Bad input to the store (a label, an id, a photo, a URL); the one-line message says what to do."""


class StoreUnavailable(FeedbackError):
    """The store cannot be reached or written (server down, disk full, read-only file)."""


def store_url(url: str | None = None) -> str:
    """The store to use: `url` when given, else the FISH_FEEDBACK_URL environment variable, else DEFAULT_URL."""
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


def new_record_id() -> str:
    """An id for add(): made once per mark by the caller, so a retried save writes the same row."""
    return uuid.uuid4().hex


def masked(url: str | URL) -> str:
    """`url` with its password hidden, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


class FeedbackStore:
    """The photos users marked and their records, in the database at `url` (any SQLAlchemy URL).

    The tables are created on first use. A SQLite file's folder is created too, and the file is put in WAL
    mode so that the app's readers never wait on a writer. Every method raises FeedbackError (bad input) or
    StoreUnavailable (the database) with a one-line message that names the store with its password masked.
    """

    def __init__(self, url: str, *, max_photo_bytes: int = MAX_PHOTO_BYTES, max_records: int = MAX_RECORDS):
        self.max_photo_bytes = max_photo_bytes
        self.max_records = max_records
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError) as exc:
            raise FeedbackError(f"the feedback store URL {masked(url)!r} is not a database URL ({exc}); "
                                f"give one like {DEFAULT_URL} or postgresql://user:password@host/db") from exc
        self.url = masked(parsed)
        self._sqlite = parsed.get_backend_name() == "sqlite"
        if self._sqlite:
            self._make_sqlite_folder(parsed)
        try:
            # A server's connections are checked before use, so that a restarted server costs no failed save.
            self.engine = create_engine(parsed, pool_size=5, max_overflow=30, pool_pre_ping=not self._sqlite,
                                        **self._connect_args(parsed))
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise FeedbackError(f"the feedback store URL {self.url!r} names no database SQLAlchemy can use "
                                f"({_one_line(exc)}); give one like {DEFAULT_URL} or postgresql://user@host/db") from exc
        # SQLite takes one writer at a time: this process's writers queue here, waking as soon as the one before
        # commits, instead of on SQLite's busy handler, which polls with sleeps of up to 100 ms.
        self._write_lock = threading.Lock() if self._sqlite else None
        if self._sqlite:
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)
        try:
            metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise StoreUnavailable(f"cannot open the feedback store {self.url}: {_one_line(exc)}") from exc

    def close(self) -> None:
        """Close the store's database connections."""
        self.engine.dispose()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def add(self, photo: bytes, label: str, model: ModelAnswer, bundle_version: str, *,
            species: Sequence[str], record_id: str | None = None) -> Record:
        """Keep `photo` (once per distinct upload) and one record of `label` for it; the record, as stored.

        `label` is one of `species` or NOT_FISH. The same `record_id` twice (a retried save) is one record:
        the first one, returned again.
        """
        species = list(species)
        _check_label(label, species)
        _check_model(model, species)
        if not isinstance(bundle_version, str) or not bundle_version.strip():
            raise FeedbackError("bundle_version is empty; pass the deploy bundle's version or hash")
        record_id = new_record_id() if record_id is None else record_id
        if not isinstance(record_id, str) or not _RECORD_ID.fullmatch(record_id):
            raise FeedbackError(f"record id {record_id!r} is not 32 lowercase hex digits; make one with new_record_id()")
        sha256, jpeg, (width, height) = self._clean_photo(photo)
        now = datetime.now(timezone.utc)
        row = {"id": record_id, "photo_sha256": sha256, "label": label, "model_label": model.label,
               "model_confidence": float(model.confidence), "model_unknown": bool(model.unknown),
               "model_unknown_score": None if model.unknown_score is None else float(model.unknown_score),
               "bundle_version": bundle_version, "created_at": now, "status": "new"}
        with self._writing() as conn:
            existing = conn.execute(select(feedback_table).where(feedback_table.c.id == record_id)).first()
            if existing is not None:
                return _record(existing)
            # Soft on PostgreSQL: writers counting at once may each pass it by one; exact on SQLite (BEGIN IMMEDIATE).
            count = conn.execute(select(func.count()).select_from(feedback_table)).scalar_one()
            if count >= self.max_records:
                raise FeedbackError(f"the feedback store {self.url} holds {count:,} records, its limit "
                                    f"({self.max_records:,}); review and export them, or raise max_records")
            _insert_if_absent(conn, photos_table, {"sha256": sha256, "jpeg": jpeg, "width": width,
                                                   "height": height, "created_at": now}, key="sha256")
            if not _insert_if_absent(conn, feedback_table, row, key="id"):  # a retry racing its first try
                existing = conn.execute(select(feedback_table).where(feedback_table.c.id == record_id)).one()
                return _record(existing)
        return _record(row)

    def records(self, status: str | None = None) -> list[Record]:
        """Every record, or those of `status`, oldest first."""
        query = select(feedback_table).order_by(feedback_table.c.seq)
        if status is not None:
            _check_status(status)
            query = query.where(feedback_table.c.status == status)
        with self._reading() as conn:
            return [_record(row) for row in conn.execute(query)]

    def set_status(self, ids: Iterable[str], status: str) -> int:
        """Give the records `ids` the review `status`; how many records that was. Unknown ids change nothing."""
        _check_status(status)
        ids = sorted(set(ids))
        if not ids:
            return 0
        with self._writing() as conn:
            found = set(conn.execute(select(feedback_table.c.id).where(feedback_table.c.id.in_(ids))).scalars())
            missing = [i for i in ids if i not in found]
            if missing:
                raise FeedbackError(f"no feedback record {', '.join(missing)} in {self.url}; "
                                    "`fish-classifier feedback list` shows the ids")
            conn.execute(update(feedback_table).where(feedback_table.c.id.in_(ids)).values(status=status))
        return len(ids)

    def photo(self, sha256: str) -> bytes:
        """The stored JPEG (metadata stripped) of the upload whose sha256 is `sha256`."""
        with self._reading() as conn:
            jpeg = conn.execute(select(photos_table.c.jpeg).where(photos_table.c.sha256 == sha256)).scalar()
        if jpeg is None:
            raise FeedbackError(f"no photo {sha256} in the feedback store {self.url}")
        return bytes(jpeg)

    def export(self, out_dir: str | Path, *, status: str = "accepted") -> dict:
        """Write the photos of the records of `status` as `<label>/<sha256>.jpg` (NOT_FISH's in `not-fish/`).

        A photo given different labels goes under its latest record's, and the report's `relabelled` says so.
        The folder is built beside `out_dir` and renamed into place, so a reader never sees half an export;
        an earlier export there is replaced, any other folder that is not empty is refused.
        Returns {"records", "photos", "labels": {label: photos}, "relabelled": [{sha256, labels, kept}]}.
        """
        out_dir = Path(out_dir)
        chosen: dict[str, list[str]] = {}  # sha256 -> its labels, oldest first
        for record in self.records(status):
            chosen.setdefault(record.photo_sha256, []).append(record.label)
        if out_dir.exists() and not _is_export(out_dir):
            raise FeedbackError(f"{out_dir} exists and is not an earlier feedback export; give a new or empty folder")
        for label in {labels[-1] for labels in chosen.values()}:
            if label in ("", ".", "..") or "/" in label or "\\" in label or "\0" in label:
                raise FeedbackError(f"label {label!r} cannot be a folder name; relabel or reject its records")
        report = {"records": sum(map(len, chosen.values())), "photos": len(chosen), "labels": {}, "relabelled": []}
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        scratch = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            scratch.mkdir()
            for sha256, labels in chosen.items():
                kept = labels[-1]
                if len(set(labels)) > 1:
                    report["relabelled"].append({"sha256": sha256, "labels": labels, "kept": kept})
                (scratch / kept).mkdir(exist_ok=True)
                (scratch / kept / f"{sha256}.jpg").write_bytes(self.photo(sha256))
                report["labels"][kept] = report["labels"].get(kept, 0) + 1
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            if out_dir.exists():
                out_dir.rename(old)
            scratch.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            shutil.rmtree(scratch, ignore_errors=True)
            raise StoreUnavailable(f"cannot write the export to {out_dir}: {exc.strerror or exc}") from exc
        report["labels"] = dict(sorted(report["labels"].items()))
        return report

    def _clean_photo(self, photo: bytes) -> tuple[str, bytes, tuple[int, int]]:
        """(sha256 of the upload, the photo as a metadata-free JPEG turned upright, its size)."""
        if not isinstance(photo, (bytes, bytearray, memoryview)):
            raise FeedbackError(f"the photo must be the uploaded bytes, got {type(photo).__name__}")
        photo = bytes(photo)
        if not photo:
            raise FeedbackError("the photo is empty (0 bytes)")
        if len(photo) > self.max_photo_bytes:
            raise FeedbackError(f"the photo is {len(photo):,} bytes, over the store's {self.max_photo_bytes:,}-byte limit")
        try:
            image = open_rgb(photo)  # EXIF orientation applied; bombs, animations and odd formats refused
        except (ImageError, OSError) as exc:
            raise FeedbackError(f"the photo cannot be kept: {exc}") from exc
        # A new image from the bare pixels carries none of the upload's metadata (EXIF, GPS, XMP, ICC, comments).
        clean = Image.fromarray(np.asarray(image, dtype=np.uint8), "RGB")
        buffer = io.BytesIO()
        clean.save(buffer, "JPEG", quality=JPEG_QUALITY)
        return hashlib.sha256(photo).hexdigest(), buffer.getvalue(), clean.size

    def _make_sqlite_folder(self, url: URL) -> None:
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise FeedbackError(f"the feedback store {self.url} is not a file; give sqlite:///path/feedback.db "
                                "so that the feedback outlives the process")
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the folder of the feedback store {self.url}: "
                                   f"{exc.strerror or exc} ({exc.filename})") from exc

    @staticmethod
    def _connect_args(url: URL) -> dict:
        if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
            return {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
        return {}

    def _writing(self):
        """A transaction that writes: on SQLite it takes the write lock up front (BEGIN IMMEDIATE), so two
        writers queue on the busy timeout instead of one failing when it upgrades a read lock."""
        return _Transaction(self, write=True)

    def _reading(self):
        return _Transaction(self, write=False)


class _Transaction:
    """`with`: a connection in a transaction, committed on success; database errors become StoreUnavailable."""

    def __init__(self, store: FeedbackStore, write: bool):
        self.store, self.write = store, write
        self.lock = store._write_lock if write else None

    def __enter__(self):
        if self.lock is not None:
            self.lock.acquire()
        try:
            self.conn = self.store.engine.connect()
            self.conn.execution_options(fish_feedback_write=self.write)
            self.transaction = self.conn.begin()
        except SQLAlchemyError as exc:
            if getattr(self, "conn", None) is not None:
                self.conn.close()
            self._release()
            raise StoreUnavailable(f"cannot reach the feedback store {self.store.url}: {_one_line(exc)}") from exc
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.transaction.commit()
            else:
                self.transaction.rollback()
        except SQLAlchemyError as error:
            if exc_type is None:
                raise StoreUnavailable(f"cannot write to the feedback store {self.store.url}: "
                                       f"{_one_line(error)}") from error
        finally:
            self.conn.close()
            self._release()
        if isinstance(exc, SQLAlchemyError):
            raise StoreUnavailable(f"the feedback store {self.store.url} failed: {_one_line(exc)}") from exc
        return False

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def _sqlite_on_connect(dbapi_connection, connection_record) -> None:
    # The driver's own transaction handling off, so that _sqlite_on_begin decides how each one begins.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_on_begin(conn) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("fish_feedback_write") else "BEGIN")


def _insert_if_absent(conn, table: Table, values: dict, key: str) -> bool:
    """Insert `values` unless a row with the same `key` exists, safely against concurrent writers; whether it did."""
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        result = conn.execute(dialect_insert(table).values(values).on_conflict_do_nothing(index_elements=[key]))
        return result.rowcount == 1
    try:  # any other database: a savepoint, so that a duplicate key only undoes this insert
        with conn.begin_nested():
            conn.execute(insert(table).values(values))
        return True
    except IntegrityError:
        return False


def _record(row) -> Record:
    row = row._mapping if hasattr(row, "_mapping") else row
    created = row["created_at"]
    created = created.replace(tzinfo=timezone.utc) if created.tzinfo is None else created.astimezone(timezone.utc)
    model = ModelAnswer(row["model_label"], row["model_confidence"], bool(row["model_unknown"]),
                        row["model_unknown_score"])
    return Record(row["id"], row["photo_sha256"], row["label"], model, row["bundle_version"], created, row["status"])


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


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise FeedbackError(f"status {status!r} is not one of: {', '.join(STATUSES)}")


def _is_export(folder: Path) -> bool:
    """Whether `folder` holds nothing, or only label folders of <sha256>.jpg files (what export writes)."""
    if not folder.is_dir():
        return False
    for entry in folder.iterdir():
        if not entry.is_dir() or entry.is_symlink():
            return False
        for photo in entry.iterdir():
            if not (photo.is_file() and photo.suffix == ".jpg" and _SHA256.fullmatch(photo.stem)):
                return False
    return True


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line, without SQLAlchemy's background link and the statement it ran."""
    text = str(getattr(exc, "orig", None) or exc)
    text = text.split("\n(Background on this error")[0].split("\n[SQL:")[0]
    return " ".join(text.split()) or type(exc).__name__
