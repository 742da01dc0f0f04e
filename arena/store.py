"""Durable SQLite store for arena votes.

Why SQLite: votes are small, append-only and must survive crashes; one file in a
data dir is trivially backed up and needs no server.

Durability choices (documented because they are the point of this module):

* ``journal_mode=WAL`` so readers (leaderboard, export) never block the writer.
* ``synchronous=FULL``: every commit fsyncs the WAL before ``add_vote`` returns, so
  a vote we *acknowledged* to the user survives not only a process crash (NORMAL
  would suffice for that) but also an OS crash / power loss. Votes arrive at human
  speed, so the extra fsync per vote is irrelevant.
* One vote == one ``BEGIN IMMEDIATE ... COMMIT`` transaction.
* ``battle_id`` is the PRIMARY KEY, so "one vote per battle" holds even if two
  processes (or a buggy caller) try to record the same battle.

Thread safety: a single connection guarded by a lock. Votes are rare and short,
so serialising them costs nothing and avoids leaking one connection per
(short-lived) worker thread. Other processes coordinate through SQLite's own
locking (``busy_timeout``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from common import sqlite

DB_FILENAME = "votes.sqlite3"
SCHEMA_VERSION = 1
VOTE_CHOICES: tuple[str, ...] = ("a", "b", "tie", "both_bad")
# Our vote -> Chatbot Arena "winner" value.
WINNER_BY_VOTE: dict[str, str] = {
    "a": "model_a",
    "b": "model_b",
    "tie": "tie",
    "both_bad": "tie (bothbad)",
}
_PAGE = 500

# Each entry migrates the schema from version (index) to version (index + 1).
_MIGRATIONS: list[list[str]] = [
    [
        """
        CREATE TABLE votes (
            battle_id    TEXT PRIMARY KEY NOT NULL CHECK (length(battle_id) > 0),
            created_at   TEXT NOT NULL,
            tweet        TEXT NOT NULL,
            contender_a  TEXT NOT NULL CHECK (length(contender_a) > 0),
            contender_b  TEXT NOT NULL CHECK (length(contender_b) > 0 AND contender_b <> contender_a),
            reply_a      TEXT NOT NULL,
            reply_b      TEXT NOT NULL,
            settings     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings)),
            vote         TEXT NOT NULL CHECK (vote IN ('a', 'b', 'tie', 'both_bad')),
            session_hash TEXT NOT NULL,
            client_hash  TEXT NOT NULL,
            app_version  TEXT NOT NULL,
            flags        TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(flags) AND json_type(flags) = 'array'),
            excluded     INTEGER NOT NULL DEFAULT 0 CHECK (excluded IN (0, 1))
        )
        """,
        "CREATE INDEX votes_created_at ON votes (created_at)",
        "CREATE INDEX votes_pair ON votes (contender_a, contender_b)",
    ],
]
assert len(_MIGRATIONS) == SCHEMA_VERSION

COLUMNS: tuple[str, ...] = (  # the votes table's columns, in order (arena.export's CSV too)
    "battle_id",
    "created_at",
    "tweet",
    "contender_a",
    "contender_b",
    "reply_a",
    "reply_b",
    "settings",
    "vote",
    "session_hash",
    "client_hash",
    "app_version",
    "flags",
    "excluded",
)


class StoreError(RuntimeError):
    """Base class so callers can catch every store problem in one place."""


class DuplicateVoteError(StoreError):
    """A vote for this battle id is already stored (one vote per battle)."""

    def __init__(self, battle_id: str) -> None:
        super().__init__(f"A vote for battle {battle_id!r} is already recorded.")
        self.battle_id = battle_id


def utc_now_iso() -> str:
    """Timezone-aware UTC timestamp, the only format stored in created_at."""
    return datetime.now(timezone.utc).isoformat()


def iso_from_timestamp(ts: float) -> str:
    """Unix seconds -> UTC ISO string (used with an injected clock)."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def _normalise_created_at(value: str) -> str:
    """Reject naive / unparseable timestamps so tstamp is always well defined."""
    try:
        dt = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"created_at must be an ISO-8601 timestamp, got {value!r}") from exc
    if dt.tzinfo is None:
        raise ValueError(f"created_at must include a timezone (UTC), got {value!r}")
    return dt.astimezone(timezone.utc).isoformat()


@dataclass(frozen=True)
class VoteRecord:
    """One stored vote: the battle as shown, the choice, and provenance.

    ``session_hash``/``client_hash`` must already be salted hashes; the store never
    sees raw identifiers.
    """

    battle_id: str
    tweet: str
    contender_a: str
    contender_b: str
    reply_a: str
    reply_b: str
    vote: str
    session_hash: str
    client_hash: str
    app_version: str
    settings: dict[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    excluded: bool = False
    created_at: str = field(default_factory=utc_now_iso)

    @property
    def tstamp(self) -> float:
        return datetime.fromisoformat(self.created_at).timestamp()

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (flags as a list)."""
        d = asdict(self)
        d["flags"] = list(self.flags)
        return d

    def to_battle(self) -> dict[str, Any]:
        """Chatbot Arena battle format (what the leaderboard consumes)."""
        return {
            "model_a": self.contender_a,
            "model_b": self.contender_b,
            "winner": WINNER_BY_VOTE[self.vote],
            "len_a": len(self.reply_a),
            "len_b": len(self.reply_b),
            "battle_id": self.battle_id,
            "tstamp": self.tstamp,
        }


def _coerce_record(record: VoteRecord | Mapping[str, Any]) -> VoteRecord:
    if isinstance(record, VoteRecord):
        return record
    if isinstance(record, Mapping):
        data = dict(record)
        if "flags" in data and data["flags"] is not None:
            data["flags"] = tuple(data["flags"])
        try:
            return VoteRecord(**data)
        except TypeError as exc:
            raise ValueError(f"Invalid vote record: {exc}") from exc
    raise TypeError(f"add_vote expects a VoteRecord or a mapping, got {type(record).__name__}")


def _row_params(rec: VoteRecord) -> tuple[Any, ...]:
    """Validate in Python first so callers get a clear error, not a CHECK failure."""
    for name in (
        "battle_id",
        "tweet",
        "contender_a",
        "contender_b",
        "reply_a",
        "reply_b",
        "vote",
        "session_hash",
        "client_hash",
        "app_version",
        "created_at",
    ):
        if not isinstance(getattr(rec, name), str):
            raise ValueError(f"{name} must be a string, got {type(getattr(rec, name)).__name__}")
    if not rec.battle_id:
        raise ValueError("battle_id must be non-empty")
    if not rec.contender_a or not rec.contender_b:
        raise ValueError("contender names must be non-empty")
    if rec.contender_a == rec.contender_b:
        raise ValueError(f"a battle needs two different contenders, got {rec.contender_a!r} twice")
    if rec.vote not in VOTE_CHOICES:
        raise ValueError(f"vote must be one of {VOTE_CHOICES}, got {rec.vote!r}")
    if not all(isinstance(f, str) for f in rec.flags):
        raise ValueError("flags must be strings")
    try:
        settings_json = json.dumps(rec.settings, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"settings must be JSON-serialisable: {exc}") from exc
    return (
        rec.battle_id,
        _normalise_created_at(rec.created_at),
        rec.tweet,
        rec.contender_a,
        rec.contender_b,
        rec.reply_a,
        rec.reply_b,
        settings_json,
        rec.vote,
        rec.session_hash,
        rec.client_hash,
        rec.app_version,
        json.dumps(list(rec.flags), ensure_ascii=False),
        1 if rec.excluded else 0,
    )


def _record_from_row(row: sqlite3.Row) -> VoteRecord:
    return VoteRecord(
        battle_id=row["battle_id"],
        tweet=row["tweet"],
        contender_a=row["contender_a"],
        contender_b=row["contender_b"],
        reply_a=row["reply_a"],
        reply_b=row["reply_b"],
        vote=row["vote"],
        session_hash=row["session_hash"],
        client_hash=row["client_hash"],
        app_version=row["app_version"],
        settings=json.loads(row["settings"]),
        flags=tuple(json.loads(row["flags"])),
        excluded=bool(row["excluded"]),
        created_at=row["created_at"],
    )


class VoteStore:
    """Append-only vote table in ``<data_dir>/votes.sqlite3``."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_FILENAME
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        try:
            conn = sqlite.connect(self.path, synchronous="FULL")
        except sqlite.SQLiteError as exc:
            raise StoreError(str(exc)) from None
        try:
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    # -- lifecycle ---------------------------------------------------------
    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Bring the schema to SCHEMA_VERSION; IMMEDIATE so two processes can't race."""
        with sqlite.transaction(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"votes database has schema version {version}, newer than this app "
                    f"({SCHEMA_VERSION}); upgrade the app instead of downgrading the data."
                )
            for v in range(version, SCHEMA_VERSION):
                for stmt in _MIGRATIONS[v]:
                    conn.execute(stmt)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "VoteStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("VoteStore is closed")
        return self._conn

    # -- writes ------------------------------------------------------------
    def add_vote(self, record: VoteRecord | Mapping[str, Any]) -> None:
        """Insert one vote in its own durable transaction.

        Returns only after COMMIT (fsynced, synchronous=FULL), so a caller may
        acknowledge the vote as soon as this returns. Raises DuplicateVoteError
        if the battle already has a vote, ValueError for an invalid record.
        """
        rec = _coerce_record(record)
        params = _row_params(rec)
        sql = f"INSERT INTO votes ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        with self._lock:
            try:
                with sqlite.transaction(self._db()) as conn:
                    conn.execute(sql, params)
            except sqlite3.IntegrityError as exc:
                msg = str(exc)
                if "UNIQUE" in msg or "PRIMARY KEY" in msg:
                    raise DuplicateVoteError(rec.battle_id) from None
                raise ValueError(f"vote record rejected by the database: {msg}") from exc

    # -- reads -------------------------------------------------------------
    def count(self, include_excluded: bool = True) -> int:
        """Number of stored votes (all rows by default)."""
        where = "" if include_excluded else " WHERE excluded = 0"
        with self._lock:
            return int(self._db().execute(f"SELECT count(*) FROM votes{where}").fetchone()[0])

    def iter_votes(self, include_excluded: bool = False) -> Iterator[VoteRecord]:
        """Votes in insertion order, paged so no read transaction stays open between yields."""
        where = "" if include_excluded else " AND excluded = 0"
        last = 0
        while True:
            with self._lock:
                rows = (
                    self._db()
                    .execute(
                        f"SELECT rowid AS _rowid, * FROM votes WHERE rowid > ?{where} ORDER BY rowid LIMIT ?",
                        (last, _PAGE),
                    )
                    .fetchall()
                )
            if not rows:
                return
            for row in rows:
                yield _record_from_row(row)
            last = rows[-1]["_rowid"]

    def battles_for_leaderboard(self, include_excluded: bool = False) -> list[dict[str, Any]]:
        """Votes in Chatbot Arena battle format; excluded (e.g. flagged) votes left out by default."""
        return [rec.to_battle() for rec in self.iter_votes(include_excluded=include_excluded)]

    def excluded_counts(self) -> dict[str, int]:
        """How many excluded votes carry each flag (an excluded vote without flags: "unflagged")."""
        with self._lock:
            conn = self._db()
            rows = conn.execute(
                "SELECT j.value AS flag, count(*) AS n FROM votes, json_each(votes.flags) AS j "
                "WHERE votes.excluded = 1 GROUP BY j.value ORDER BY j.value"
            ).fetchall()
            unflagged = conn.execute(
                "SELECT count(*) FROM votes WHERE excluded = 1 AND json_array_length(flags) = 0"
            ).fetchone()[0]
        counts = {str(r["flag"]): int(r["n"]) for r in rows}
        if unflagged:
            counts["unflagged"] = int(unflagged)
        return counts

    def pair_counts(self, include_excluded: bool = False) -> dict[tuple[str, str], int]:
        """Votes per unordered contender pair (key sorted), for pair sampling."""
        where = "" if include_excluded else " WHERE excluded = 0"
        with self._lock:
            rows = (
                self._db()
                .execute(
                    "SELECT min(contender_a, contender_b) AS x, max(contender_a, contender_b) AS y, "
                    f"count(*) AS n FROM votes{where} GROUP BY x, y"
                )
                .fetchall()
            )
        return {(r["x"], r["y"]): int(r["n"]) for r in rows}

    # -- diagnostics -------------------------------------------------------
    def integrity_check(self) -> str:
        """'ok' when SQLite finds no corruption."""
        with self._lock:
            rows = self._db().execute("PRAGMA integrity_check").fetchall()
        return "\n".join(str(r[0]) for r in rows)

    def journal_mode(self) -> str:
        with self._lock:
            return str(self._db().execute("PRAGMA journal_mode").fetchone()[0]).lower()

    def schema_version(self) -> int:
        with self._lock:
            return int(self._db().execute("PRAGMA user_version").fetchone()[0])
