"""Batch replies for evaluation: load held-out tweets, generate with every chosen variant, cache on disk.

Tweet sources: the bundled held-out set (``assets/heldout_tweets.jsonl``), an exported eval split
(``<data_dir>/datasets/<name>/pairs.jsonl``: rows with ``split == "eval"``), or any JSONL / JSON / CSV file with a
``tweet`` column and an optional ``reference_reply`` (or ``reply``) column. Several rows for the same tweet become
one item with several references.

The cache (``<data_dir>/eval_cache/replies.sqlite3``) is keyed by the sha256 of (model name, adapter + a
fingerprint of its files, the rendered prompt -- which holds the tweet, the system prompt and RAG's few-shot
examples --, the sampling settings and the thinking switch), so a re-run with the same settings generates nothing.
Sampling uses the model card's defaults with a fixed seed, so one cached sample stands for each (tweet, variant).
"""

from __future__ import annotations

import csv
import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

from common import sqlite
from common.text import TWEET_LIMIT
from generation.chat import render_prompt
from generation.variants import adapter_name, is_lora

__all__ = [
    "EvalItem",
    "ReplyRecord",
    "BatchReplies",
    "ReplyCache",
    "load_items",
    "exported_eval_splits",
    "generate_replies",
    "cache_key",
    "EVAL_SEED",
]

EVAL_SEED = 1234
ProgressFn = Callable[[int, int, str], None]  # (done, total, message)


@dataclass
class EvalItem:
    tweet_id: str
    tweet: str
    references: list[str] = field(default_factory=list)
    topic: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ReplyRecord:
    variant: str
    tweet_id: str
    reply: str
    thinking: str = ""
    raw: str = ""
    new_tokens: int = 0
    seconds: float = 0.0
    cached: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BatchReplies:
    items: list[EvalItem]
    variants: list[str]
    replies: dict[str, list[ReplyRecord]]
    n_generated: int = 0
    n_cached: int = 0
    model_calls: int = 0
    settings: dict = field(default_factory=dict)

    def reply(self, variant: str, i: int) -> str:
        return self.replies[variant][i].reply


# --------------------------------------------------------------------------- #
# Loading tweets
# --------------------------------------------------------------------------- #
_REF_KEYS = ("reference_reply", "reference", "reply")
_EVAL_SPLITS = {"eval", "validation", "test", "heldout"}


def _read_rows(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".csv":
        return [dict(r) for r in csv.DictReader(text.splitlines())]
    if suffix == ".json":
        data = json.loads(text)
        if isinstance(data, dict):
            data = data.get("rows") or data.get("data") or [data]
        if not isinstance(data, list):
            raise ValueError(f"{path.name}: expected a list of objects")
        return [r for r in data if isinstance(r, dict)]
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path.name} line {n} is not valid JSON ({exc.msg}); use JSONL (one object per line) or CSV."
            ) from None
        if isinstance(obj, dict):
            rows.append(obj)
    return rows


def load_items(source: str | Path, limit: int | None = None) -> tuple[list[EvalItem], list[str]]:
    """Read a tweets file -> (items, warnings). Raises ValueError with a sentence the UI can show."""
    path = Path(source)
    if not path.is_file():
        raise ValueError(f"Tweets file {path} does not exist.")
    rows = _read_rows(path)
    if not rows:
        raise ValueError(f"{path.name} holds no rows.")
    if not any("tweet" in r for r in rows):
        raise ValueError(f"{path.name} needs a `tweet` column (found: {', '.join(sorted(rows[0]))[:200]}).")
    warnings: list[str] = []
    if any("split" in r for r in rows):
        kept = [r for r in rows if str(r.get("split", "")).lower() in _EVAL_SPLITS]
        if not kept:
            raise ValueError(
                f"{path.name} has a `split` column but no eval rows; export the dataset with an eval fraction > 0."
            )
        warnings.append(f"used the {len(kept)} eval-split rows of {len(rows)}")
        rows = kept
    by_tweet: dict[str, EvalItem] = {}
    skipped = 0
    for i, r in enumerate(rows):
        tweet = str(r.get("tweet") or "").strip()
        if not tweet or len(tweet) > TWEET_LIMIT:
            skipped += 1
            continue
        ref = next((str(r[k]).strip() for k in _REF_KEYS if r.get(k) not in (None, "") and str(r[k]).strip()), None)
        item = by_tweet.get(tweet)
        if item is None:
            tid = str(r.get("tweet_id") or r.get("id") or f"row{i + 1}")
            item = by_tweet[tweet] = EvalItem(tid, tweet, [], (str(r["topic"]) if r.get("topic") else None))
        if ref and ref not in item.references:
            item.references.append(ref)
    if skipped:
        warnings.append(f"skipped {skipped} rows with an empty tweet or one over {TWEET_LIMIT} characters")
    items = list(by_tweet.values())
    if len(items) < len(rows) - skipped:
        warnings.append(f"merged rows for the same tweet: {len(rows) - skipped} rows -> {len(items)} tweets")
    if limit is not None and limit > 0 and len(items) > limit:
        items = items[: int(limit)]
    if not items:
        raise ValueError(f"{path.name} has no usable tweets.")
    return items, warnings


def exported_eval_splits(data_dir: str | Path) -> list[Path]:
    """pairs.jsonl of every exported dataset (Data tab) under <data_dir>/datasets/, newest first."""
    root = Path(data_dir) / "datasets"
    if not root.is_dir():
        return []
    found = [p for p in root.glob("*/pairs.jsonl") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


# --------------------------------------------------------------------------- #
# Reply cache
# --------------------------------------------------------------------------- #
def cache_key(model_name: str, variant: str, adapter_fp: str, prompt: str, settings: dict) -> str:
    blob = json.dumps(
        {"model": model_name, "variant": variant, "adapter": adapter_fp, "prompt": prompt, "settings": settings},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class ReplyCache:
    """sha256 key -> generated reply, in ``<cache_dir>/replies.sqlite3``."""

    def __init__(self, cache_dir: str | Path):
        self.path = Path(cache_dir) / "replies.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite.connect(self.path, row_factory=False)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, variant TEXT NOT NULL, "
            "record TEXT NOT NULL, created_at REAL NOT NULL)"
        )

    def get_many(self, keys: Sequence[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                q = f"SELECT key, record FROM replies WHERE key IN ({','.join('?' * len(chunk))})"
                for k, rec in self._conn.execute(q, chunk):
                    out[k] = json.loads(rec)
        return out

    def put_many(self, rows: Iterable[tuple[str, str, dict]]) -> None:
        now = time.time()
        with self._lock:
            with sqlite.transaction(self._conn):
                self._conn.executemany(
                    "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)",
                    [(k, v, json.dumps(r, ensure_ascii=False), now) for k, v, r in rows],
                )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _adapter_fingerprint(engine, variant: str) -> str:
    """Sizes + mtimes of the adapter's top-level files, so a retrained adapter with the same name misses the cache."""
    if not is_lora(variant):
        return ""
    d = Path(getattr(getattr(engine, "bank", None), "adapters_dir", "adapters")) / adapter_name(variant)
    if not d.is_dir():
        return "missing"
    parts = [
        f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
        for p in sorted(d.iterdir())
        if p.is_file() and p.name != "metrics.json"
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


adapter_fingerprint = _adapter_fingerprint  # public name for other packages (the Arena's battle pool)


def generate_replies(
    engine,
    items: Sequence[EvalItem],
    variants: Sequence[str],
    *,
    thinking: bool = False,
    sampling=None,
    cache: ReplyCache | str | Path | None = None,
    batch_size: int = 8,
    progress: ProgressFn | None = None,
) -> BatchReplies:
    """Replies of every variant for every item, cached; calls ``engine.generate_batch`` only for cache misses."""
    if isinstance(cache, (str, Path)):
        cache = ReplyCache(cache)
    thinking = bool(thinking and engine.supports_thinking)
    s = sampling or replace(engine.default_sampling(thinking), seed=EVAL_SEED)
    settings = {**s.to_dict(), "thinking": thinking}
    model_name = engine.loaded.name
    total = len(items) * len(variants)
    done = 0
    out = BatchReplies(list(items), list(variants), {}, settings=settings)
    for variant in variants:
        fp = _adapter_fingerprint(engine, variant)
        keys = []
        for it in items:
            messages, _ = engine.messages_for(it.tweet, variant)
            keys.append(
                cache_key(model_name, variant, fp, render_prompt(engine.tokenizer, messages, thinking), settings)
            )
        hits = cache.get_many(keys) if cache is not None else {}
        recs: list[ReplyRecord | None] = [None] * len(items)
        miss = []
        for i, k in enumerate(keys):
            if k in hits:
                recs[i] = ReplyRecord(**{**hits[k], "variant": variant, "tweet_id": items[i].tweet_id, "cached": True})
            else:
                miss.append(i)
        done += len(items) - len(miss)
        if progress:
            progress(done, total, f"{variant}: {len(items) - len(miss)} cached, {len(miss)} to generate")
        if miss:
            base_done = done

            def sub(d, n, _v=variant, _b=base_done):
                if progress:
                    progress(_b + d, total, f"{_v}: generated {d}/{n}")

            results = engine.generate_batch([items[i].tweet for i in miss], variant, s, thinking, batch_size, sub)
            out.model_calls += 1
            new_rows = []
            for i, r in zip(miss, results):
                rec = ReplyRecord(
                    variant, items[i].tweet_id, r.reply, r.thinking, r.raw, int(r.new_tokens), float(r.seconds)
                )
                recs[i] = rec
                stored = {k: v for k, v in rec.to_dict().items() if k not in ("variant", "tweet_id", "cached")}
                new_rows.append((keys[i], variant, stored))
            if cache is not None:
                cache.put_many(new_rows)
            done += len(miss)
            out.n_generated += len(miss)
        out.n_cached += len(items) - len(miss)
        out.replies[variant] = [r for r in recs if r is not None]
    if progress:
        progress(total, total, f"replies ready: {out.n_generated} generated, {out.n_cached} from the cache")
    return out
