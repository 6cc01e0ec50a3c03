"""The store's database: a URL that names none, or a database that cannot be reached or written, is refused in
one line with its password masked; SQLite is a file in WAL mode; an insert of a row already there is no error."""

import uuid
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from fish_classifier.feedback.database import Database, connect_args, insert_if_absent, masked, one_line
from fish_classifier.feedback.postgres_cluster import create_database, drop_database
from fish_classifier.feedback.schema import FeedbackError, StoreUnavailable, photos_table


def _photo_row(sha: str) -> dict:
    return {"sha256": sha, "jpeg": b"\xff\xd8", "width": 1, "height": 1, "created_at": datetime.now(timezone.utc)}


def test_a_wrong_or_unreachable_url_is_refused_naming_it():
    with pytest.raises(StoreUnavailable, match=r"cannot open the feedback store postgresql://nobody:\*\*\*@127.0.0.1:1/x: "
                                               r".*Connection refused") as refused:
        Database("postgresql://nobody:hunter2@127.0.0.1:1/x")
    assert "hunter2" not in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(FeedbackError, match="the feedback store URL 'nosuch://' names no database SQLAlchemy can use"):
        Database("nosuch://")
    with pytest.raises(FeedbackError, match="the feedback store URL 'feedback.db' is not a database URL"):
        Database("feedback.db")
    with pytest.raises(FeedbackError, match="is not a file; give sqlite:///path/feedback.db"):
        Database("sqlite://")


def test_a_sqlite_store_that_cannot_be_written_is_refused(tmp_path):
    (tmp_path / "feedback").write_text("a file where the store's folder should be")
    with pytest.raises(StoreUnavailable, match=f"cannot create the folder of the feedback store sqlite:///{tmp_path}"
                                               "/feedback/feedback.db: (File exists|Not a directory)"):
        Database(f"sqlite:///{tmp_path}/feedback/feedback.db")
    (tmp_path / "folder.db").mkdir()  # a folder where the database file should be
    with pytest.raises(StoreUnavailable, match="cannot open the feedback store sqlite:///.*folder.db: unable to open"):
        Database(f"sqlite:///{tmp_path}/folder.db")


def test_a_store_that_refuses_writes_fails_in_one_line_and_keeps_what_it_had(postgres_server):
    name = f"feedback_read_only_{uuid.uuid4().hex[:8]}"
    url = create_database(postgres_server, name)
    database = Database(url.render_as_string(hide_password=False))
    try:
        with database.writing() as conn:
            assert insert_if_absent(conn, photos_table, _photo_row("a" * 64), key="sha256")
        with database.engine.connect() as conn:
            conn.execute(text(f"ALTER DATABASE {name} SET default_transaction_read_only = on"))
            conn.commit()
        database.engine.dispose()  # new connections get the setting
        with pytest.raises(StoreUnavailable, match=rf"^the feedback store postgresql\+psycopg://\S+/{name} failed: "
                                                   r".*read-only transaction[^\n]*$"):
            with database.writing() as conn:
                insert_if_absent(conn, photos_table, _photo_row("b" * 64), key="sha256")
        with database.reading() as conn:
            assert list(conn.execute(select(photos_table.c.sha256)).scalars()) == ["a" * 64]
    finally:
        database.close()
        drop_database(postgres_server, name)


def test_a_sqlite_store_is_in_wal_mode(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/a/b/feedback.db")
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    database.close()
    assert (tmp_path / "a" / "b" / "feedback.db").is_file()


def test_inserting_a_row_that_is_there_is_no_error_and_writes_nothing(store_url):
    database = Database(store_url)
    try:
        with database.writing() as conn:
            assert insert_if_absent(conn, photos_table, _photo_row("c" * 64), key="sha256") is True
            assert insert_if_absent(conn, photos_table, _photo_row("c" * 64), key="sha256") is False
        with database.reading() as conn:
            assert conn.execute(select(func.count()).select_from(photos_table)).scalar_one() == 1
    finally:
        database.close()


def test_a_failed_transaction_writes_nothing(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/feedback.db")
    with pytest.raises(RuntimeError, match="the caller's own error"):
        with database.writing() as conn:
            insert_if_absent(conn, photos_table, _photo_row("d" * 64), key="sha256")
            raise RuntimeError("the caller's own error")  # not the database's: passed on as it is, after a rollback
    with database.reading() as conn:
        assert conn.execute(select(func.count()).select_from(photos_table)).scalar_one() == 0
    database.close()


def test_urls_and_errors_are_shown_in_one_line_without_the_password():
    assert masked("postgresql://app:hunter2@db/feedback") == "postgresql://app:***@db/feedback"
    assert masked("not a url://app:hunter2@db") == "not a url://app:***@db"
    error = Exception("connection failed\n  at host db\n(Background on this error at: https://sqlalche.me/e/20/e3q8)")
    assert one_line(error) == "connection failed at host db"
    assert one_line(Exception()) == "Exception"


def test_a_database_server_gets_the_connect_timeout_asked_for_unless_its_url_sets_one():
    assert connect_args(make_url("postgresql://fish@db/feedback"), 3) == {"connect_args": {"connect_timeout": 3}}
    assert connect_args(make_url("postgresql://fish@db/feedback?connect_timeout=9"), 3) == {}
    assert connect_args(make_url("sqlite:///feedback/feedback.db"), 3) == {}
