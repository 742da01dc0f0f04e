"""Vote-quality and abuse controls: identity hashing, rate limits, reveal detection.

Kept separate from battles.py so the policies can be unit-tested and tuned
without touching the battle state machine.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import tempfile
from collections import deque
from pathlib import Path
from typing import Iterable, Sequence

from security.ratelimit import RateWindow  # one definition for the in-memory and the persistent limiter

SALT_ENV = "ARENA_SALT"  # read by context.Settings.from_env
SALT_FILENAME = "arena_salt"
FLAG_REVEALS_CONTENDER = "reveals_contender"

# Phrases that give away which system wrote a reply; a vote on such a pair is
# no longer blind, so it is flagged (and by default excluded from the ratings).
DEFAULT_REVEAL_PATTERNS: tuple[str, ...] = (
    r"RAG",
    r"LoRA",
    r"fine[- ]?tuned",
    r"Qwen",
    r"retrieved examples",
    r"few[- ]shot",
    r"adapter",
    r"base model",
    r"SmolLM",
)


def hash_id(salt: str, raw_id: str) -> str:
    """sha256(salt + id): lets us rate-limit/dedupe per user without storing who they are.

    The salt is secret (never exported), so hashes of low-entropy ids such as IPs
    cannot be reversed by brute force from an exported dataset.
    """
    return hashlib.sha256((salt + raw_id).encode("utf-8")).hexdigest()


def load_or_create_salt(data_dir: Path | str) -> str:
    """Per-data-dir random salt, created once and reused so hashes stay stable across restarts.

    Created via write-temp + link so concurrent first starts agree on one salt and
    a crash never leaves an empty salt file.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SALT_FILENAME
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".salt-")
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, secrets.token_hex(32).encode("ascii"))
            os.fsync(fd)
            os.close(fd)
            fd = -1
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process won the race; use its salt
        finally:
            if fd >= 0:
                os.close(fd)
            os.unlink(tmp)
    salt = path.read_text(encoding="ascii").strip()
    if len(salt) < 16:
        raise RuntimeError(
            f"Salt file {path} is empty or too short; delete it to regenerate "
            "(existing hashes will no longer match) or set ARENA_SALT."
        )
    return salt


def resolve_salt(configured: str | None, data_dir: Path | str) -> str:
    """The configured salt (the app passes ARENA_SALT, read by context.Settings) > persisted per-data-dir salt."""
    if configured:
        return configured
    return load_or_create_salt(data_dir)


def compile_reveal_patterns(patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive, word-bounded alternation of all patterns (None if empty)."""
    parts = [f"(?:{p})" for p in patterns if p]
    if not parts:
        return None
    return re.compile(r"\b(?:" + "|".join(parts) + r")\b", re.IGNORECASE)


def detect_flags(replies: Sequence[str], reveal_re: re.Pattern[str] | None) -> list[str]:
    """Quality flags for a battle's replies (currently: reveals which contender wrote it)."""
    flags: list[str] = []
    if reveal_re is not None and any(reveal_re.search(r or "") for r in replies):
        flags.append(FLAG_REVEALS_CONTENDER)
    return flags


class SlidingWindowRateLimiter:
    """Per-key sliding-window limits (e.g. 20/min and 500/day).

    Not thread-safe by itself: the BattleManager calls it under its own lock, so
    check -> store write -> record is atomic with respect to other votes.
    """

    def __init__(self, windows: Sequence[RateWindow]) -> None:
        self.windows = tuple(w for w in windows if w.limit > 0)
        self._horizon = max((w.seconds for w in self.windows), default=0.0)
        self._events: dict[str, deque[float]] = {}
        self._ops = 0

    def _trim(self, key: str, now: float) -> deque[float] | None:
        q = self._events.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self._horizon:
            q.popleft()
        if not q:
            del self._events[key]
            return None
        return q

    def check(self, keys: Iterable[str], now: float) -> str | None:
        """Message of the first exceeded window for any key, or None if allowed."""
        for key in keys:
            q = self._trim(key, now)
            if q is None:
                continue
            for w in self.windows:
                recent = sum(1 for t in q if t > now - w.seconds)
                if recent >= w.limit:
                    return w.message
        return None

    def record(self, keys: Iterable[str], now: float) -> None:
        for key in keys:
            self._events.setdefault(key, deque()).append(now)
        self._ops += 1
        if self._ops % 1024 == 0:  # drop idle keys so memory stays bounded
            for key in list(self._events):
                self._trim(key, now)
