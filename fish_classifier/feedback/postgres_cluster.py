"""A throwaway PostgreSQL server for the store's tests and its benchmark: Debian's `postgresql` binaries,
a cluster in a temporary folder, on a free port of 127.0.0.1, gone when the `with` block ends.

    with TemporaryPostgres() as server:
        url = server.create_database("feedback_test")   # postgresql+psycopg://postgres@127.0.0.1:PORT/feedback_test

As root (initdb refuses to run as root) the server runs as the `postgres` user that the Debian package makes.
"""

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

BINARIES_GLOB = "/usr/lib/postgresql/*/bin"  # where Debian's postgresql-NN packages put initdb and pg_ctl
SUPERUSER = "postgres"
START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be started here; the message says what to install or set."""


def find_binaries() -> Path | None:
    """The newest Debian PostgreSQL bin folder holding initdb and pg_ctl, else pg_ctl's folder on PATH, else None."""
    folders = [Path(f) for f in glob.glob(BINARIES_GLOB)]
    folders.sort(key=lambda f: [int(n) for n in re.findall(r"\d+", f.parent.name)] or [0], reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        folders.append(Path(on_path).parent)
    return next((f for f in folders if (f / "initdb").is_file() and (f / "pg_ctl").is_file()), None)


def database_url(server_url: str | URL, database: str) -> URL:
    """`server_url` pointing at `database` instead, with the psycopg driver."""
    return make_url(server_url).set(drivername="postgresql+psycopg", database=database)


def create_database(server_url: str | URL, database: str) -> URL:
    """Create `database` (dropping one of that name first) on the server of `server_url`; its URL."""
    admin = create_engine(database_url(server_url, "postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{database}"'))
    finally:
        admin.dispose()
    return database_url(server_url, database)


def drop_database(server_url: str | URL, database: str) -> None:
    admin = create_engine(database_url(server_url, "postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    finally:
        admin.dispose()


class TemporaryPostgres:
    """`with TemporaryPostgres() as server:` a fresh cluster; `server.url` reaches its `postgres` database.

    `durable=False` turns fsync and synchronous commits off: faster tests, figures that flatter. The benchmark
    keeps them on, as a real server would.
    """

    def __init__(self, *, durable: bool = True):
        self.durable = durable
        self.bin = find_binaries()
        if self.bin is None:
            raise PostgresUnavailable("no PostgreSQL server binaries (initdb, pg_ctl) under "
                                      f"{BINARIES_GLOB} or on PATH; install Debian's postgresql "
                                      "(apt-get install postgresql)")
        self.user = self._run_as()
        self.folder: Path | None = None
        self.port: int | None = None

    @property
    def url(self) -> URL:
        return URL.create("postgresql+psycopg", username=SUPERUSER, host="127.0.0.1", port=self.port,
                          database="postgres")

    def create_database(self, name: str) -> URL:
        return create_database(self.url, name)

    def __enter__(self) -> "TemporaryPostgres":
        self.folder = Path(tempfile.mkdtemp(prefix="fish-postgres-"))
        try:
            if self.user is not None:
                os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
            data = self.folder / "data"
            self._pg("initdb", "--pgdata", str(data), "--username", SUPERUSER, "--auth", "trust",
                     "--encoding", "UTF8", "--no-sync")
            self.port = _free_port()
            options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
            if not self.durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            self._pg("pg_ctl", "start", "--pgdata", str(data), "--wait", f"--timeout={START_TIMEOUT_S}",
                     "--log", str(self.folder / "server.log"), "-o", options)
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self._pg("pg_ctl", "stop", "--pgdata", str(self.folder / "data"), "--mode", "immediate", "--wait")
        except PostgresUnavailable:
            pass  # a server that did not stop dies with its folder below
        finally:
            self._remove()

    def _pg(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        kwargs = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        result = subprocess.run(command, cwd=self.folder, capture_output=True, text=True, timeout=START_TIMEOUT_S * 2,
                                env={**os.environ, "LC_ALL": "C.UTF-8"}, **kwargs)
        if result.returncode != 0:
            log = self.folder / "server.log"
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            if log.is_file():
                detail += log.read_text(errors="replace").strip().splitlines()[-3:]
            raise PostgresUnavailable(f"{program} failed (exit {result.returncode}): {' | '.join(detail)}")

    @staticmethod
    def _run_as() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(SUPERUSER)
        except KeyError:
            raise PostgresUnavailable(f"running as root, and there is no {SUPERUSER!r} user to run PostgreSQL as "
                                      "(initdb refuses root); install Debian's postgresql, which makes it") from None

    def _remove(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
