"""A/B ledger: every evaluation appends its comparisons to ``<data_dir>/ledger.sqlite3``, so decisions have a history.

One row per comparison (adapter vs base, adapter vs RAG, RAG vs base) of one evaluation: time, eval id, name,
adapter, versus, metric values (JSON), verdict, report path, config hash. Rows of one evaluation are written in one
transaction. WAL + synchronous=FULL like the vote store: rows are few and must survive a crash.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from common import sqlite
from generation.variants import lora_variant

__all__ = ["LEDGER_FILENAME", "LEDGER_COLUMNS", "LedgerRow", "Ledger"]

LEDGER_FILENAME = "ledger.sqlite3"
LEDGER_COLUMNS = [
    "time (UTC)",
    "evaluation",
    "adapter",
    "versus",
    "judge win rate",
    "95% CI",
    "p",
    "verdict",
    "judge",
    "config",
    "report",
]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  TEXT NOT NULL,
    eval_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    adapter     TEXT NOT NULL,
    versus      TEXT NOT NULL,
    metrics     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metrics)),
    verdict     TEXT NOT NULL,
    report_path TEXT NOT NULL DEFAULT '',
    config_hash TEXT NOT NULL DEFAULT ''
)
"""


@dataclass
class LedgerRow:
    eval_id: str
    name: str
    adapter: str
    versus: str
    verdict: str
    metrics: dict[str, Any] = field(default_factory=dict)
    report_path: str = ""
    config_hash: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ledger:
    def __init__(self, data_dir: str | Path):
        self.path = Path(data_dir) / LEDGER_FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite.connect(self.path, synchronous="FULL")
        self._conn.execute(_SCHEMA)
        self._conn.execute("CREATE INDEX IF NOT EXISTS ledger_adapter ON ledger (adapter, created_at)")

    def append(self, rows: Sequence[LedgerRow]) -> list[int]:
        """Insert the rows of one evaluation in one transaction; returns their ids."""
        ids = []
        with self._lock:
            with sqlite.transaction(self._conn):
                for r in rows:
                    cur = self._conn.execute(
                        "INSERT INTO ledger (created_at, eval_id, name, adapter, versus, metrics, verdict, "
                        "report_path, config_hash) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            r.created_at,
                            r.eval_id,
                            r.name,
                            r.adapter,
                            r.versus,
                            json.dumps(r.metrics, sort_keys=True, allow_nan=False, default=str),
                            r.verdict,
                            str(r.report_path),
                            r.config_hash,
                        ),
                    )
                    ids.append(int(cur.lastrowid))
        return ids

    def list(self, limit: int = 200, adapter: str | None = None) -> list[LedgerRow]:
        """Newest first."""
        q, args = "SELECT * FROM ledger", []
        if adapter:
            q += " WHERE adapter = ?"
            args.append(adapter)
        q += " ORDER BY id DESC LIMIT ?"
        args.append(int(limit))
        with self._lock:
            rows = self._conn.execute(q, args).fetchall()
        return [
            LedgerRow(
                r["eval_id"],
                r["name"],
                r["adapter"],
                r["versus"],
                r["verdict"],
                json.loads(r["metrics"]),
                r["report_path"],
                r["config_hash"],
                r["created_at"],
                int(r["id"]),
            )
            for r in rows
        ]

    def latest_report(self, adapter: str) -> str | None:
        """Report path of the newest evaluation that involved this adapter (bare name or "lora:<name>")."""
        for name in (adapter, lora_variant(adapter)):
            got = self.list(limit=1, adapter=name)
            if got and got[0].report_path:
                return got[0].report_path
        return None

    def table(self, limit: int = 200) -> list[list]:
        """Rows for the Evaluate tab's ledger table (LEDGER_COLUMNS)."""
        out = []
        for r in self.list(limit):
            m = r.metrics
            wr = m.get("win_rate")
            ci = (
                f"{m['ci_low']:.2f} – {m['ci_high']:.2f}"
                if m.get("ci_low") is not None and m.get("ci_high") is not None
                else "–"
            )
            p = m.get("p_value")
            out.append(
                [
                    r.created_at.replace("T", " ")[:19],
                    r.name,
                    r.adapter,
                    r.versus,
                    f"{wr:.1%}" if wr is not None else "–",
                    ci,
                    f"{p:.3g}" if p is not None else "–",
                    r.verdict,
                    m.get("judge", ""),
                    r.config_hash[:10],
                    r.report_path,
                ]
            )
        return out

    def close(self) -> None:
        with self._lock:
            self._conn.close()
