"""The feedback store: photos users marked in the app, and what they said about them.

Its tables and records are `schema`'s, the cleaning of an upload `photos`', the database and its transactions
`database`'s, the export folder `export`'s; this module is the store the app, the CLI and the data stage use,
and every name they import from it is here.

The serving image runs this module: it imports the standard library, numpy, Pillow and SQLAlchemy only.
"""

import os
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import func, select, update

from fish_classifier.feedback import DEFAULT_URL, URL_ENV
from fish_classifier.feedback.database import CONNECT_TIMEOUT_S, Database, insert_if_absent, masked
from fish_classifier.feedback.export import write_export
from fish_classifier.feedback.photos import clean_photo
from fish_classifier.feedback.schema import (
    NOT_FISH,
    STATUSES,
    FeedbackError,
    ModelAnswer,
    Record,
    StoreUnavailable,
    check_mark,
    check_status,
    feedback_table,
    metadata,
    new_record_id,
    photos_table,
    record_from_row,
)

__all__ = [
    "DEFAULT_URL", "MAX_PHOTO_BYTES", "MAX_RECORDS", "NOT_FISH", "STATUSES", "URL_ENV", "FeedbackError",
    "FeedbackStore", "ModelAnswer", "Record", "StoreUnavailable", "feedback_table", "masked", "metadata",
    "new_record_id", "photos_table", "store_url",
]

MAX_PHOTO_BYTES = 20 * 2**20  # as the app's upload limit (.streamlit/config.toml, server.maxUploadSize = 20 MB)
MAX_RECORDS = 100_000


def store_url(url: str | None = None) -> str:
    """The store to use: `url` when given, else the FISH_FEEDBACK_URL environment variable, else DEFAULT_URL."""
    return url or os.environ.get(URL_ENV) or DEFAULT_URL


class FeedbackStore:
    """The photos users marked and their records, in the database at `url` (any SQLAlchemy URL).

    The tables are created on first use. A SQLite file's folder is created too, and the file is put in WAL
    mode so that the app's readers never wait on a writer. Every method raises FeedbackError (bad input) or
    StoreUnavailable (the database) with a one-line message that names the store with its password masked.
    A database server that does not answer fails a call after `connect_timeout_s` (the URL's own
    `connect_timeout`, when it has one, wins).
    """

    def __init__(self, url: str, *, max_photo_bytes: int = MAX_PHOTO_BYTES, max_records: int = MAX_RECORDS,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S):
        self.max_photo_bytes = max_photo_bytes
        self.max_records = max_records
        self._database = Database(url, connect_timeout_s=connect_timeout_s)
        self.url = self._database.url
        self.engine = self._database.engine

    def close(self) -> None:
        """Close the store's database connections."""
        self._database.close()

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
        record_id = new_record_id() if record_id is None else record_id
        check_mark(label, model, bundle_version, record_id, list(species))
        clean = clean_photo(photo, max_bytes=self.max_photo_bytes)
        now = datetime.now(timezone.utc)
        row = {"id": record_id, "photo_sha256": clean.sha256, "label": label, "model_label": model.label,
               "model_confidence": float(model.confidence), "model_unknown": bool(model.unknown),
               "model_unknown_score": None if model.unknown_score is None else float(model.unknown_score),
               "bundle_version": bundle_version, "created_at": now, "status": "new"}
        with self._database.writing() as conn:
            existing = conn.execute(select(feedback_table).where(feedback_table.c.id == record_id)).first()
            if existing is not None:
                return record_from_row(existing)
            # Soft on PostgreSQL: writers counting at once may each pass it by one; exact on SQLite (BEGIN IMMEDIATE).
            count = conn.execute(select(func.count()).select_from(feedback_table)).scalar_one()
            if count >= self.max_records:
                raise FeedbackError(f"the feedback store {self.url} holds {count:,} records, its limit "
                                    f"({self.max_records:,}); review and export them, or raise max_records")
            insert_if_absent(conn, photos_table, {"sha256": clean.sha256, "jpeg": clean.jpeg, "width": clean.width,
                                                  "height": clean.height, "created_at": now}, key="sha256")
            if not insert_if_absent(conn, feedback_table, row, key="id"):  # a retry racing its first try
                existing = conn.execute(select(feedback_table).where(feedback_table.c.id == record_id)).one()
                return record_from_row(existing)
        return record_from_row(row)

    def records(self, status: str | None = None) -> list[Record]:
        """Every record, or those of `status`, oldest first."""
        query = select(feedback_table).order_by(feedback_table.c.seq)
        if status is not None:
            check_status(status)
            query = query.where(feedback_table.c.status == status)
        with self._database.reading() as conn:
            return [record_from_row(row) for row in conn.execute(query)]

    def set_status(self, ids: Iterable[str], status: str) -> int:
        """Give the records `ids` the review `status`; how many records that was. Unknown ids change nothing."""
        check_status(status)
        ids = sorted(set(ids))
        if not ids:
            return 0
        with self._database.writing() as conn:
            found = set(conn.execute(select(feedback_table.c.id).where(feedback_table.c.id.in_(ids))).scalars())
            missing = [i for i in ids if i not in found]
            if missing:
                raise FeedbackError(f"no feedback record {', '.join(missing)} in {self.url}; "
                                    "`fish-classifier feedback list` shows the ids")
            conn.execute(update(feedback_table).where(feedback_table.c.id.in_(ids)).values(status=status))
        return len(ids)

    def photo(self, sha256: str) -> bytes:
        """The stored JPEG (metadata stripped) of the upload whose sha256 is `sha256`."""
        with self._database.reading() as conn:
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
        labels_of: dict[str, list[str]] = {}  # sha256 -> its labels, oldest first
        for record in self.records(status):
            labels_of.setdefault(record.photo_sha256, []).append(record.label)
        return write_export(out_dir, labels_of, self.photo)
