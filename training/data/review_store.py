"""Human review of candidate pairs (keep / discard / edit), persisted in SQLite.

Why SQLite: reviews survive restarts and browser reconnects, two admins can review at once (WAL,
short transactions, one per write), and nothing needs a server. Every decision is also appended to a
history table, so an edit never loses the original text or who changed it.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from common import sqlite
from common.text import URL_RE

from .pairs import Pair

__all__ = ["ReviewItem", "ReviewStore", "STATUSES", "validate_reply_text", "validate_dataset_name", "DB_NAME"]

DB_NAME = "reviews.sqlite3"
STATUSES = ("pending", "kept", "discarded", "edited")
MAX_REPLY_CHARS = 280
_DECISIONS = {
    "keep": "kept",
    "kept": "kept",
    "discard": "discarded",
    "discarded": "discarded",
    "edit": "edited",
    "edited": "edited",
    "pending": "pending",
    "reset": "pending",
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    n_pairs INTEGER NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS pairs (
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    pair_id TEXT NOT NULL,
    data TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','kept','discarded','edited')),
    edited_text TEXT,
    reviewer TEXT,
    decided_at REAL,
    PRIMARY KEY (dataset, pair_id),
    UNIQUE (dataset, idx)
);
CREATE INDEX IF NOT EXISTS pairs_status ON pairs(dataset, status, idx);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL,
    pair_id TEXT NOT NULL,
    status TEXT NOT NULL,
    edited_text TEXT,
    reviewer TEXT,
    decided_at REAL NOT NULL
);
"""


def validate_dataset_name(name: str) -> str:
    """Dataset names become directory names on export: 1–64 of [A-Za-z0-9._-], not starting with . _ -."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid dataset name {name!r}: use 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def validate_reply_text(text: Any) -> str:
    """An edited reply must still pass the seed's text rules: non-empty, ≤ 280 chars, no URL."""
    if not isinstance(text, str):
        raise ValueError(f"edited reply must be a string, got {type(text).__name__}")
    t = text.strip()
    if not t:
        raise ValueError("edited reply is empty")
    if len(t) > MAX_REPLY_CHARS:
        raise ValueError(f"edited reply is {len(t)} characters; the limit is {MAX_REPLY_CHARS}")
    m = URL_RE.search(t)
    if m:
        raise ValueError(
            f"edited reply contains a URL or domain ({m.group(0)!r}); links are not allowed in training replies"
        )
    return t


@dataclass(frozen=True)
class ReviewItem:
    dataset: str
    index: int
    pair: Pair
    status: str
    edited_text: str | None
    reviewer: str | None
    decided_at: float | None

    @property
    def pair_id(self) -> str:
        return self.pair.pair_id

    @property
    def original_reply(self) -> str:
        return self.pair.reply

    @property
    def reply(self) -> str:
        """The text to train on: the edit if there is one."""
        return self.edited_text if self.status == "edited" and self.edited_text else self.pair.reply

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "index": self.index,
            "pair_id": self.pair_id,
            "status": self.status,
            "reply": self.reply,
            "original_reply": self.original_reply,
            "edited_text": self.edited_text,
            "reviewer": self.reviewer,
            "decided_at": self.decided_at,
            "pair": self.pair.to_dict(),
        }


class ReviewStore:
    """``<data_dir>/reviews.sqlite3``. Connections are short-lived (one per call), so one instance is
    safe to share across Gradio worker threads and a new instance/process sees the same state."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DB_NAME
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    # ---------------------------------------------------------------- plumbing

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite.connect(self.path, row_factory=False)
        try:
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: all of the write or none of it."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _require_dataset(self, conn: sqlite3.Connection, dataset: str) -> None:
        if conn.execute("SELECT 1 FROM datasets WHERE name=?", (dataset,)).fetchone() is None:
            raise KeyError(f"no review dataset named {dataset!r}")

    @staticmethod
    def _item(dataset: str, row: tuple[Any, ...]) -> ReviewItem:
        idx, data, status, edited, reviewer, decided = row
        return ReviewItem(dataset, int(idx), Pair.from_dict(json.loads(data)), status, edited, reviewer, decided)

    _COLS = "idx, data, status, edited_text, reviewer, decided_at"

    # ---------------------------------------------------------------- datasets

    def create_dataset(
        self,
        name: str,
        pairs: Iterable[Pair],
        *,
        replace: bool = False,
        meta: Mapping[str, Any] | None = None,
    ) -> int:
        """Create (or with replace=True, atomically replace) a dataset of pending pairs; returns its size."""
        validate_dataset_name(name)
        rows = []
        seen: set[str] = set()
        for i, p in enumerate(pairs):
            if p.pair_id in seen:
                raise ValueError(f"duplicate pair_id {p.pair_id!r} in dataset {name!r}")
            seen.add(p.pair_id)
            rows.append((name, i, p.pair_id, json.dumps(p.to_dict(), ensure_ascii=False)))
        meta_s = json.dumps(dict(meta or {}), ensure_ascii=False, default=str)
        with self._write() as conn:
            exists = conn.execute("SELECT 1 FROM datasets WHERE name=?", (name,)).fetchone() is not None
            if exists and not replace:
                raise ValueError(f"review dataset {name!r} already exists; pass replace=True to overwrite it")
            conn.execute("DELETE FROM pairs WHERE dataset=?", (name,))
            conn.execute("DELETE FROM history WHERE dataset=?", (name,))
            conn.execute("DELETE FROM datasets WHERE name=?", (name,))
            conn.execute(
                "INSERT INTO datasets(name, created_at, n_pairs, meta) VALUES (?,?,?,?)",
                (name, time.time(), len(rows), meta_s),
            )
            conn.executemany("INSERT INTO pairs(dataset, idx, pair_id, data) VALUES (?,?,?,?)", rows)
        return len(rows)

    def delete_dataset(self, name: str) -> None:
        with self._write() as conn:
            self._require_dataset(conn, name)
            conn.execute("DELETE FROM pairs WHERE dataset=?", (name,))
            conn.execute("DELETE FROM history WHERE dataset=?", (name,))
            conn.execute("DELETE FROM datasets WHERE name=?", (name,))

    def datasets(self) -> list[dict[str, Any]]:
        """All datasets, newest first, with their progress."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT name, created_at, n_pairs FROM datasets ORDER BY created_at DESC, name"
            ).fetchall()
        return [{"name": n, "created_at": c, "total": t, **self.progress(n)} for n, c, t in rows]

    def meta(self, dataset: str) -> dict[str, Any]:
        with self._connect() as conn:
            row = conn.execute("SELECT meta FROM datasets WHERE name=?", (dataset,)).fetchone()
        if row is None:
            raise KeyError(f"no review dataset named {dataset!r}")
        return json.loads(row[0])

    # ---------------------------------------------------------------- reading

    def next_pending(self, dataset: str) -> ReviewItem | None:
        """First pending pair in import order, or None when the dataset is fully reviewed."""
        with self._connect() as conn:
            self._require_dataset(conn, dataset)
            row = conn.execute(
                f"SELECT {self._COLS} FROM pairs WHERE dataset=? AND status='pending' ORDER BY idx LIMIT 1", (dataset,)
            ).fetchone()
        return self._item(dataset, row) if row else None

    def get(self, dataset: str, index: int) -> ReviewItem:
        with self._connect() as conn:
            self._require_dataset(conn, dataset)
            row = conn.execute(
                f"SELECT {self._COLS} FROM pairs WHERE dataset=? AND idx=?", (dataset, int(index))
            ).fetchone()
        if row is None:
            raise IndexError(f"dataset {dataset!r} has no pair at index {index}")
        return self._item(dataset, row)

    def get_pair(self, dataset: str, pair_id: str) -> ReviewItem:
        with self._connect() as conn:
            self._require_dataset(conn, dataset)
            row = conn.execute(
                f"SELECT {self._COLS} FROM pairs WHERE dataset=? AND pair_id=?", (dataset, pair_id)
            ).fetchone()
        if row is None:
            raise KeyError(f"dataset {dataset!r} has no pair {pair_id!r}")
        return self._item(dataset, row)

    def list(
        self, dataset: str, status: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[ReviewItem]:
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {STATUSES}")
        q = f"SELECT {self._COLS} FROM pairs WHERE dataset=?"
        args: list[Any] = [dataset]
        if status is not None:
            q += " AND status=?"
            args.append(status)
        q += " ORDER BY idx LIMIT ? OFFSET ?"
        args += [-1 if limit is None else int(limit), int(offset)]
        with self._connect() as conn:
            self._require_dataset(conn, dataset)
            rows = conn.execute(q, args).fetchall()
        return [self._item(dataset, r) for r in rows]

    def progress(self, dataset: str) -> dict[str, int]:
        with self._connect() as conn:
            self._require_dataset(conn, dataset)
            counts = dict(
                conn.execute(
                    "SELECT status, COUNT(*) FROM pairs WHERE dataset=? GROUP BY status", (dataset,)
                ).fetchall()
            )
        out = {s: int(counts.get(s, 0)) for s in ("kept", "discarded", "edited", "pending")}
        total = sum(out.values())
        return {"total": total, "reviewed": total - out["pending"], **out}

    def history(self, dataset: str, pair_id: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT pair_id, status, edited_text, reviewer, decided_at FROM history WHERE dataset=?"
        args: list[Any] = [dataset]
        if pair_id is not None:
            q += " AND pair_id=?"
            args.append(pair_id)
        with self._connect() as conn:
            rows = conn.execute(q + " ORDER BY id", args).fetchall()
        return [dict(zip(("pair_id", "status", "edited_text", "reviewer", "decided_at"), r)) for r in rows]

    def reviewed_pairs(self, dataset: str, include_pending: bool = False) -> list[tuple[Pair, bool]]:
        """(pair with the text to train on, was_edited) for kept + edited rows, in import order."""
        statuses = ("kept", "edited", "pending") if include_pending else ("kept", "edited")
        out = []
        for it in self.list(dataset):
            if it.status in statuses:
                p = Pair.from_dict({**it.pair.to_dict(), "reply": it.reply})
                out.append((p, it.status == "edited"))
        return out

    # ---------------------------------------------------------------- writing

    def decide(
        self,
        dataset: str,
        pair_id: str,
        decision: str,
        edited_text: str | None = None,
        reviewer: str | None = None,
    ) -> ReviewItem:
        """Record keep / discard / edit (or 'pending' to undo). Validation happens before the write, so an
        invalid edit changes nothing. Keeping with text identical to the original is a plain keep."""
        status = _DECISIONS.get(str(decision).strip().casefold())
        if status is None:
            raise ValueError(f"unknown decision {decision!r}; expected keep, discard, edit or pending")
        if edited_text is not None and status in ("kept", "edited"):
            status = "edited"
        elif status == "edited":
            raise ValueError("decision 'edit' needs edited_text")
        elif edited_text is not None:
            raise ValueError(f"edited_text only goes with keep/edit, not {decision!r}")
        text = validate_reply_text(edited_text) if status == "edited" else None
        reviewer = (str(reviewer).strip() or None) if reviewer is not None else None
        now = time.time()
        with self._write() as conn:
            self._require_dataset(conn, dataset)
            row = conn.execute("SELECT data FROM pairs WHERE dataset=? AND pair_id=?", (dataset, pair_id)).fetchone()
            if row is None:
                raise KeyError(f"dataset {dataset!r} has no pair {pair_id!r}")
            if status == "edited" and text == json.loads(row[0])["reply"].strip():
                status, text = "kept", None
            decided = None if status == "pending" else now
            conn.execute(
                "UPDATE pairs SET status=?, edited_text=?, reviewer=?, decided_at=? WHERE dataset=? AND pair_id=?",
                (status, text, reviewer if status != "pending" else None, decided, dataset, pair_id),
            )
            conn.execute(
                "INSERT INTO history(dataset, pair_id, status, edited_text, reviewer, decided_at) VALUES (?,?,?,?,?,?)",
                (dataset, pair_id, status, text, reviewer, now),
            )
        return self.get_pair(dataset, pair_id)

    def close(self) -> None:  # symmetry with other stores; nothing is held open
        return None
