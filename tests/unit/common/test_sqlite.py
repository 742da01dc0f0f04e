"""The one SQLite connect: WAL, busy timeout, 0600 file, BEGIN IMMEDIATE transactions that roll back whole."""

from __future__ import annotations

import sqlite3
import stat
import threading

import pytest

from common import sqlite


def test_connect_settings_and_file_mode(tmp_path):
    conn = sqlite.connect(tmp_path / "sub" / "x.sqlite3", synchronous="FULL")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == int(sqlite.BUSY_TIMEOUT_S * 1000)
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.isolation_level is None  # autocommit off: writes go through transaction()
    finally:
        conn.close()
    assert stat.S_IMODE((tmp_path / "sub" / "x.sqlite3").stat().st_mode) == 0o600


def test_transaction_commits_or_rolls_back_whole(tmp_path):
    conn = sqlite.connect(tmp_path / "t.sqlite3")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    with sqlite.transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.IntegrityError):
        with sqlite.transaction(conn):
            conn.execute("INSERT INTO t VALUES (2)")
            conn.execute("INSERT INTO t VALUES (1)")  # duplicate: the whole transaction goes
    assert [r[0] for r in conn.execute("SELECT k FROM t")] == [1]
    assert not conn.in_transaction


def test_second_writer_waits_for_the_first(tmp_path):
    a = sqlite.connect(tmp_path / "w.sqlite3")
    b = sqlite.connect(tmp_path / "w.sqlite3")
    a.execute("CREATE TABLE t (k INTEGER)")
    release = threading.Event()

    def hold():
        with sqlite.transaction(a):
            a.execute("INSERT INTO t VALUES (1)")
            release.wait(5)

    th = threading.Thread(target=hold)
    th.start()
    threading.Timer(0.3, release.set).start()
    with sqlite.transaction(b):  # BEGIN IMMEDIATE blocks on the busy timeout instead of failing
        b.execute("INSERT INTO t VALUES (2)")
    th.join()
    assert sorted(r[0] for r in b.execute("SELECT k FROM t")) == [1, 2]
