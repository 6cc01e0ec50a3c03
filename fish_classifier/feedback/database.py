"""The feedback store's database: opening it from a URL, and the transactions its reads and writes run in.

Any SQLAlchemy database works (SQLite by default, PostgreSQL tested). A SQLite file's folder is created, and the
file is put in WAL mode so that the app's readers never wait on a writer; its writers take the write lock up
front. Every failure becomes FeedbackError (a bad URL) or StoreUnavailable (the database), in one line that
names the store with its password masked.
"""

import re
import threading
from pathlib import Path

from sqlalchemy import Table, create_engine, event, insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from fish_classifier.feedback import DEFAULT_URL
from fish_classifier.feedback.schema import FeedbackError, StoreUnavailable, metadata

CONNECT_TIMEOUT_S = 10  # a PostgreSQL host that does not answer fails in this long, not the system's minutes
SQLITE_BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for another's transaction before giving up


def masked(url: str | URL) -> str:
    """`url` with its password hidden, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


class Database:
    """The engine of the store at `url`, its tables created, and the transactions to read and write it in."""

    def __init__(self, url: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S):
        try:
            parsed = make_url(url)
        except (ArgumentError, ValueError) as exc:
            raise FeedbackError(f"the feedback store URL {masked(url)!r} is not a database URL ({exc}); "
                                f"give one like {DEFAULT_URL} or postgresql://user:password@host/db") from exc
        self.url = masked(parsed)
        sqlite = parsed.get_backend_name() == "sqlite"
        if sqlite:
            self._make_sqlite_folder(parsed)
        try:
            # A server's connections are checked before use, so that a restarted server costs no failed save.
            self.engine = create_engine(parsed, pool_size=5, max_overflow=30, pool_pre_ping=not sqlite,
                                        **connect_args(parsed, connect_timeout_s))
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise FeedbackError(f"the feedback store URL {self.url!r} names no database SQLAlchemy can use "
                                f"({one_line(exc)}); give one like {DEFAULT_URL} or postgresql://user@host/db") from exc
        # SQLite takes one writer at a time: this process's writers queue here, waking as soon as the one before
        # commits, instead of on SQLite's busy handler, which polls with sleeps of up to 100 ms.
        self._write_lock = threading.Lock() if sqlite else None
        if sqlite:
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)
        try:
            metadata.create_all(self.engine)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise StoreUnavailable(f"cannot open the feedback store {self.url}: {one_line(exc)}") from exc

    def writing(self) -> "Transaction":
        """A transaction that writes: on SQLite it takes the write lock up front (BEGIN IMMEDIATE), so two
        writers queue on the busy timeout instead of one failing when it upgrades a read lock."""
        return Transaction(self, write=True)

    def reading(self) -> "Transaction":
        return Transaction(self, write=False)

    def close(self) -> None:
        self.engine.dispose()

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


class Transaction:
    """`with`: a connection in a transaction, committed on success; database errors become StoreUnavailable."""

    def __init__(self, database: Database, write: bool):
        self.database, self.write = database, write
        self.lock = database._write_lock if write else None

    def __enter__(self):
        if self.lock is not None:
            self.lock.acquire()
        try:
            self.conn = self.database.engine.connect()
            self.conn.execution_options(fish_feedback_write=self.write)
            self.transaction = self.conn.begin()
        except SQLAlchemyError as exc:
            if getattr(self, "conn", None) is not None:
                self.conn.close()
            self._release()
            raise StoreUnavailable(f"cannot reach the feedback store {self.database.url}: {one_line(exc)}") from exc
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.transaction.commit()
            else:
                self.transaction.rollback()
        except SQLAlchemyError as error:
            if exc_type is None:
                raise StoreUnavailable(f"cannot write to the feedback store {self.database.url}: "
                                       f"{one_line(error)}") from error
        finally:
            self.conn.close()
            self._release()
        if isinstance(exc, SQLAlchemyError):
            raise StoreUnavailable(f"the feedback store {self.database.url} failed: {one_line(exc)}") from exc
        return False

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def insert_if_absent(conn, table: Table, values: dict, key: str) -> bool:
    """Insert `values` unless a row with the same `key` exists, safely against concurrent writers; whether it did."""
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        statement = dialect_insert(table).values(values).on_conflict_do_nothing(index_elements=[key])
        # SQLAlchemy keeps an INSERT's rowcount only when asked (psycopg's reads -1 otherwise).
        return conn.execute(statement, execution_options={"preserve_rowcount": True}).rowcount == 1
    try:  # any other database: a savepoint, so that a duplicate key only undoes this insert
        with conn.begin_nested():
            conn.execute(insert(table).values(values))
        return True
    except IntegrityError:
        return False


def one_line(exc: BaseException) -> str:
    """An exception's message on one line, without SQLAlchemy's background link and the statement it ran."""
    text = str(getattr(exc, "orig", None) or exc)
    text = text.split("\n(Background on this error")[0].split("\n[SQL:")[0]
    return " ".join(text.split()) or type(exc).__name__


def connect_args(url: URL, connect_timeout_s: float) -> dict:
    """create_engine's arguments that give a database server `connect_timeout_s` seconds to answer, unless `url`
    sets its own `connect_timeout`; a SQLite file has no server to wait for."""
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        return {"connect_args": {"connect_timeout": connect_timeout_s}}
    return {}


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
