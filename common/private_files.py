"""Files that hold votes, sessions and reviews are readable by the app's own user only.

SQLite creates its -wal/-shm side files with the main file's permission bits, so creating the database file 0600
before the first connect is enough to keep the whole database private.
"""
from __future__ import annotations

import os
from pathlib import Path


def private_db(path: Path | str) -> str:
    """Create `path` (mode 0600) if missing, tighten it if it exists; return it as a string for sqlite3.connect."""
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
