"""Sliding-window rate limits per key (an address, a session), persisted in SQLite so they survive a restart.

`check` + `record` keep the interface of the in-memory limiter the arena used (the caller may hold its own lock
across check -> write -> record); `hit` does both in one transaction for callers that have no lock of their own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from .store import SecurityDB


@dataclass(frozen=True)
class RateWindow:
    seconds: float
    limit: int
    message: str


class RateLimited(Exception):
    """A request over its limit; the message is one sentence for the visitor."""


class PersistentRateLimiter:
    """Limits for one kind of action (`namespace`); keys of different kinds never share counts."""

    def __init__(self, db: SecurityDB, namespace: str, windows: Sequence[RateWindow]) -> None:
        self.db = db
        self.namespace = namespace
        self.windows = tuple(w for w in windows if w.limit > 0)
        self._horizon = max((w.seconds for w in self.windows), default=0.0)
        self._ops = 0

    def _k(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def _check_locked(self, keys: Iterable[str], now: float) -> str | None:
        for key in keys:
            for w in self.windows:
                (n,) = self.db.conn.execute(
                    "SELECT COUNT(*) FROM rate_events WHERE key = ? AND ts > ?", (self._k(key), now - w.seconds)
                ).fetchone()
                if n >= w.limit:
                    return w.message
        return None

    def _record_locked(self, keys: Iterable[str], now: float) -> None:
        self.db.conn.executemany("INSERT INTO rate_events (key, ts) VALUES (?, ?)", [(self._k(k), now) for k in keys])
        self._ops += 1
        if self._ops % 256 == 0:  # old events can never count again: drop them so the file stays small
            self.db.conn.execute(
                "DELETE FROM rate_events WHERE key LIKE ? AND ts <= ?", (self.namespace + ":%", now - self._horizon)
            )

    def check(self, keys: Iterable[str], now: float | None = None) -> str | None:
        """Message of the first exceeded window for any key, or None if allowed."""
        with self.db.lock:
            return self._check_locked(list(keys), time.time() if now is None else now)

    def record(self, keys: Iterable[str], now: float | None = None) -> None:
        with self.db.lock:
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                self._record_locked(list(keys), time.time() if now is None else now)
                self.db.conn.execute("COMMIT")
            except BaseException:
                self.db.conn.execute("ROLLBACK")
                raise

    def hit(self, keys: Iterable[str], now: float | None = None) -> None:
        """Count one action for every key, or raise RateLimited (and count nothing) if any key is over a window."""
        keys, now = list(keys), (time.time() if now is None else now)
        with self.db.lock:
            self.db.conn.execute("BEGIN IMMEDIATE")
            try:
                limited = self._check_locked(keys, now)
                if limited is None:
                    self._record_locked(keys, now)
                self.db.conn.execute("COMMIT")
            except BaseException:
                self.db.conn.execute("ROLLBACK")
                raise
        if limited is not None:
            raise RateLimited(limited)

    def count(self, key: str, seconds: float, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self.db.lock:
            return self.db.conn.execute(
                "SELECT COUNT(*) FROM rate_events WHERE key = ? AND ts > ?", (self._k(key), now - seconds)
            ).fetchone()[0]


@dataclass
class VisitorLimits:
    """Per-address limits on the public actions that cost model time (Generate, starting a battle)."""

    generate: PersistentRateLimiter
    battle: PersistentRateLimiter

    @classmethod
    def build(
        cls,
        db: SecurityDB,
        generate_per_minute: int,
        battles_per_minute: int,
        generate_per_day: int | None = None,
        battles_per_day: int | None = None,
    ) -> "VisitorLimits":
        """Daily caps default to 30 minutes' worth of the per-minute rate."""

        def windows(per_min: int, per_day: int | None, what: str) -> list[RateWindow]:
            per_day = per_min * 30 if per_day is None else per_day
            return [
                RateWindow(
                    60.0,
                    per_min,
                    f"Too many {what} from your address (limit: {per_min} per minute); "
                    "please wait a minute and try again.",
                ),
                RateWindow(
                    86400.0,
                    per_day,
                    f"Your address has reached today's limit of {per_day} {what}; please come back tomorrow.",
                ),
            ]

        return cls(
            PersistentRateLimiter(db, "generate", windows(generate_per_minute, generate_per_day, "generations")),
            PersistentRateLimiter(db, "battle", windows(battles_per_minute, battles_per_day, "battles")),
        )
