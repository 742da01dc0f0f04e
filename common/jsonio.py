"""Crash-safe file writes: write a temp file in the same folder, fsync, rename over the target, fsync the folder.

Readers see the old file or the new one, never half of one; a failure leaves the old file and no temp file behind.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable


def atomic_write(path: Path | str, write: Callable[[IO], None], *, binary: bool = False, newline: str | None = None,
                 mode: int | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode is not None:
            os.chmod(tmp, mode)  # mkstemp makes 0600
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline=newline)) as fh:
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
