"""The one way this project opens SQLite: WAL, a busy timeout, explicit ``BEGIN IMMEDIATE`` transactions, mode 0600.

Every store (votes, reviews, run registry, judge cache, generation cache, ledger, embedding cache) opens its file
here, so the durability and locking rules are written once:
* ``journal_mode=WAL`` -- readers (leaderboard, export) never block the writer; refused on filesystems without it.
* ``busy_timeout`` -- another process holding the write lock makes us wait, not fail.
* ``isolation_level=None`` + ``transaction(conn)`` -- one ``BEGIN IMMEDIATE ... COMMIT`` per write, rolled back on
  any error, so a store is never half-written.
* The file is created 0600: votes and reviews hold visitors' text.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["BUSY_TIMEOUT_S", "SQLiteError", "connect", "private_db", "transaction"]

BUSY_TIMEOUT_S = 30.0


def private_db(path: Path | str) -> str:
    """Create ``path`` (mode 0600) if missing, tighten it if it exists; return it as a string for sqlite3.connect.

    SQLite creates its -wal/-shm side files with the main file's permission bits, so a 0600 main file keeps the
    whole database private; side files left by an older version are tightened too.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for side in (p.with_name(p.name + "-wal"), p.with_name(p.name + "-shm")):
        if side.exists():
            os.chmod(side, 0o600)
    return str(p)


class SQLiteError(RuntimeError):
    """The database cannot be opened with the settings every store relies on."""


def connect(
    path: Path | str, *, synchronous: str = "NORMAL", row_factory: bool = True, timeout: float = BUSY_TIMEOUT_S
) -> sqlite3.Connection:
    """Open (creating 0600 if new) ``path`` in WAL mode with autocommit off; callers write inside ``transaction``.

    The connection may be shared between threads (``check_same_thread=False``); callers guard it with a lock.
    ``synchronous="FULL"`` fsyncs every commit (votes: an acknowledged vote survives power loss).
    """
    path = Path(path)
    conn = sqlite3.connect(private_db(path), timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        if row_factory:
            conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise SQLiteError(
                f"Could not enable WAL journaling on {path} (got {mode!r}); put the data dir on a local filesystem."
            )
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (take the write lock up front, so two writers never deadlock), COMMIT, or ROLLBACK."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
