"""The throwaway PostgreSQL cluster the store's tests and benchmark start (fish_classifier/feedback/postgres_cluster.py)."""

import socket

import pytest
from sqlalchemy import create_engine, text

from fish_classifier.feedback import postgres_cluster
from fish_classifier.feedback.postgres_cluster import PostgresUnavailable, TemporaryPostgres


def test_without_server_binaries_it_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(postgres_cluster, "BINARIES_GLOB", str(tmp_path / "postgresql" / "*" / "bin"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PostgresUnavailable, match=r"no PostgreSQL server binaries \(initdb, pg_ctl\) under .*; "
                                                  r"install Debian's postgresql \(apt-get install postgresql\)"):
        TemporaryPostgres()


def test_a_cluster_serves_its_own_databases_and_leaves_nothing_behind():
    with TemporaryPostgres(durable=False) as server:
        folder, port = server.folder, server.port
        url = server.create_database("feedback_probe")
        engine = create_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar() == "feedback_probe"
            assert conn.execute(text("SHOW fsync")).scalar() == "off"
        engine.dispose()
    assert not folder.exists()
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))
