"""A cap on how much a compressed upload may expand to, enforced while streaming.

A 1 MB gzip can hold a gigabyte of one repeated byte; reading it "streamed" still costs the time to inflate it and,
for formats parsed whole, the memory. The cap is a ratio (real text exports compress 5-30x) with a floor so small
files are never refused, and an absolute ceiling.
"""

from __future__ import annotations

import io

MAX_RATIO = 100
FLOOR_BYTES = 256 * 1024 * 1024
CEILING_BYTES = 16 * 1024 * 1024 * 1024


def decompressed_limit(compressed_bytes: int) -> int:
    return min(CEILING_BYTES, max(FLOOR_BYTES, MAX_RATIO * compressed_bytes))


class CappedDecompression(io.RawIOBase):
    """Wraps a binary decompressing reader; raises ValueError (one sentence) once output passes the limit."""

    def __init__(self, raw, name: str, compressed_bytes: int, limit: int | None = None) -> None:
        self._raw = raw
        self._name = name
        self._limit = decompressed_limit(compressed_bytes) if limit is None else limit
        self._total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._raw.read(len(b))
        self._total += len(data)
        if self._total > self._limit:
            raise ValueError(
                f"{self._name}: the compressed file expands to more than {self._limit >> 20} MB "
                f"(over {MAX_RATIO}x its size); that is not a tweet export, so nothing was imported."
            )
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()
