"""JSON / JSONL files and the crash-safe write under them.

``atomic_write``: write a temp file in the same folder, fsync, rename over the target, fsync the folder. Readers see
the old file or the new one, never half of one; a failure leaves the old file and no temp file behind.
JSONL readers skip a half-written last line (a writer may be mid-append), never fail on it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import IO, Any, Callable, Iterable

__all__ = ["atomic_write", "atomic_write_bytes", "write_json", "read_json", "write_jsonl", "append_jsonl", "read_jsonl"]


def atomic_write(
    path: Path | str,
    write: Callable[[IO], None],
    *,
    binary: bool = False,
    newline: str | None = None,
    mode: int | None = None,
) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode is not None:
            os.chmod(tmp, mode)  # mkstemp makes 0600
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_bytes(path: Path | str, data: bytes, mode: int | None = 0o644) -> None:
    atomic_write(path, lambda fh: fh.write(data), binary=True, mode=mode)


def write_json(path: Path | str, data: Any, *, indent: int | None = 1) -> None:
    """Atomically replace ``path`` with ``data`` as JSON (strict: NaN is refused, other objects become strings)."""
    atomic_write(
        path, lambda fh: fh.write(json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False, default=str))
    )


def read_json(path: Path | str) -> Any | None:
    """The parsed file, or None when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_jsonl(path: Path | str, rows: Iterable[dict]) -> int:
    """Atomically replace ``path`` with one JSON object per line; returns the number of rows."""
    n = 0

    def _write(fh: IO) -> None:
        nonlocal n
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
            n += 1

    atomic_write(path, _write)
    return n


def append_jsonl(path: Path | str, record: dict) -> None:
    """Append one record as a single write of one line, flushed, so a concurrent reader sees whole lines."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=str) + "\n")
        f.flush()


def read_jsonl(path: Path | str) -> list[dict]:
    """All complete records; a blank or half-written line is skipped, a missing file is empty."""
    out: list[dict] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    except OSError:
        pass
    return out


def replace_dir(tmp: Path | str, dest: Path | str) -> None:
    """Swap a finished folder into place. A folder cannot be renamed over a non-empty one, so the old one is moved
    aside first and removed after the rename: readers see the old folder or the new one, never a half-written one."""
    tmp, dest = Path(tmp), Path(dest)
    if not dest.exists():
        os.replace(tmp, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
