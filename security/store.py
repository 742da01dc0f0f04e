"""One small private SQLite file (`security.sqlite3`) for admin sessions and rate-limit events.

Kept on disk so a restart neither logs admins out early nor hands every address a fresh allowance.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from common.sqlite import private_db

DB_FILENAME = "security.sqlite3"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rate_events (key TEXT NOT NULL, ts REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS rate_events_key_ts ON rate_events (key, ts)",
    "CREATE TABLE IF NOT EXISTS admin_sessions (token_sha256 TEXT PRIMARY KEY, who TEXT NOT NULL, "
    "created REAL NOT NULL, expires REAL NOT NULL)",
)


class SecurityDB:
    """A shared connection guarded by a lock; every write is its own IMMEDIATE transaction."""

    def __init__(self, data_dir: Path | str | None) -> None:
        """`data_dir=None`: an in-memory database (tests and tools that need no persistence)."""
        self.path = Path(data_dir) / DB_FILENAME if data_dir is not None else None
        self.lock = threading.Lock()
        target = private_db(self.path) if self.path is not None else ":memory:"
        self.conn = sqlite3.connect(target, timeout=30, isolation_level=None, check_same_thread=False)
        if self.path is not None:
            self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA busy_timeout = 30000")
        for stmt in _SCHEMA:
            self.conn.execute(stmt)

    def close(self) -> None:
        with self.lock:
            self.conn.close()
