"""The feedback store's backends for its tests: a SQLite file, and a database of its own on a real PostgreSQL
server, FISH_TEST_POSTGRES_URL's or, when that is unset, a throwaway cluster started from Debian's binaries.
Neither given nor startable is a failure, never a skip: the PostgreSQL cases must not pass without running."""

import contextlib
import os
import uuid

import pytest

from fish_classifier.feedback.postgres_cluster import (
    PostgresUnavailable,
    TemporaryPostgres,
    create_database,
    drop_database,
)

POSTGRES_URL_ENV = "FISH_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server URL whose user may create databases."""
    given = os.environ.get(POSTGRES_URL_ENV)
    if given:
        yield given
        return
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(TemporaryPostgres(durable=False))
        except PostgresUnavailable as exc:
            problem = str(exc)  # failed below, outside the except, so the report is this one line
        else:
            yield server.url.render_as_string(hide_password=False)
            return
    pytest.fail(f"the PostgreSQL store tests need a server: set {POSTGRES_URL_ENV}=postgresql://user@host:port/db "
                f"(a user that may create databases), or install Debian's postgresql ({problem})", pytrace=False)


@pytest.fixture(params=BACKENDS)
def store_url(request, tmp_path):
    """A URL of an empty store of its own: a SQLite file (in a folder not made yet), or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'feedback.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"feedback_test_{uuid.uuid4().hex[:12]}"
    url = create_database(server, name)
    yield url.render_as_string(hide_password=False)
    drop_database(server, name)
