"""FAISS index of high-engagement (tweet, reply) examples for the RAG few-shot variant.

Examples are embedded on their TWEET: we look up tweets similar to the user's and show
the replies that did well on them. The index is persisted next to its dataset and
rebuilt whenever the dataset bytes, the filter config or the model change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import faiss
import numpy as np

from common.jsonio import atomic_write_bytes
from common.text import TWEET_LIMIT, has_url

from .encoder import Encoder, get_encoder

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATASET = REPO_ROOT / "assets" / "sample_pairs.jsonl"
DEFAULT_FALLBACK_DIR = Path(".cache") / "indexes"
META_VERSION = 1  # bump when the selection logic changes, so persisted indexes rebuild
SELF_MATCH_SCORE = 0.999

_WS_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class RetrievalConfig:
    """Which rows may serve as few-shot examples, and how many to show.

    Defaults mirror the seed's data filters (assets/README.md) so an example is never a
    row the training pipeline would reject, with a stricter ``min_likes`` (10, not 5):
    few-shot examples should be clearly good replies. ``k=3`` is the seed's RAG baseline.
    Only the filter fields decide index contents; changing ``k`` does not force a rebuild.
    """

    k: int = 3  # examples per query (seed RAG baseline)
    min_likes: int = 10  # "high engagement"
    min_reply_chars: int = 30  # shorter replies ("lol same") teach nothing
    max_reply_chars: int = TWEET_LIMIT  # over the tweet limit → rambling
    exclude_urls: bool = True  # a link in the reply (text or has_url flag): likes are for the link
    exclude_media: bool = True  # has_media: engagement comes from the image, not the text
    min_author_followers: int | None = 500  # low-reach / bot-like accounts
    max_author_followers: int | None = 100_000  # famous accounts: likes come from reach
    min_time_diff_seconds: int | None = 300  # very early replies get likes for speed
    langs: tuple[str, ...] | None = ("en",)  # None = any language
    dedup_reply_text: bool = True  # generic bait posted under several tweets: keep the first only
    # Replies saying the same thing in other words (cosine >= this; None = off). On the sample data
    # the known near-duplicate pairs score 0.86-0.99 and every other pair <= 0.70. Without it, the
    # few-shot block can show the same joke twice.
    near_dup_reply_threshold: float | None = 0.85

    def filter_key(self) -> dict[str, Any]:
        """The fields that change which rows are indexed (stored in the index metadata)."""
        d = dataclasses.asdict(self)
        d.pop("k")
        if d["langs"] is not None:
            d["langs"] = sorted(d["langs"])
        return d


@dataclass(frozen=True)
class Example:
    """One indexed row: the best reply to a distinct tweet."""

    pair_id: str
    tweet: str
    reply: str
    likes: int
    row: int  # position among the dataset's parsed rows (stable while its sha256 is)


@dataclass(frozen=True)
class Retrieved:
    """A search hit: a similar tweet, its high-engagement reply, and the cosine similarity."""

    tweet: str
    reply: str
    likes: int
    score: float
    pair_id: str


def normalize_text(text: str) -> str:
    """Comparison form for de-duplication: whitespace collapsed, case folded."""
    return _WS_RE.sub(" ", text).strip().casefold()


def _as_int(value: Any, default: int = 0) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "y", "t"}
    return bool(value)


def reject_reason(row: dict[str, Any], config: RetrievalConfig) -> str | None:
    """Why a row can't be an example (None = eligible). Duplicate rules are applied by the caller."""
    tweet = str(row.get("tweet") or "").strip()
    reply = str(row.get("reply") or "").strip()
    if not tweet or not reply:
        return "empty"
    if len(reply) < config.min_reply_chars:
        return "reply_too_short"
    if len(reply) > config.max_reply_chars:
        return "reply_too_long"
    if config.exclude_urls and (_as_bool(row.get("has_url")) or has_url(reply)):
        return "url"
    if config.exclude_media and _as_bool(row.get("has_media")):
        return "media"
    followers = row.get("author_followers")
    if followers is not None:
        f = _as_int(followers)
        if config.min_author_followers is not None and f < config.min_author_followers:
            return "followers_low"
        if config.max_author_followers is not None and f > config.max_author_followers:
            return "followers_high"
    td = row.get("time_diff_seconds")
    if config.min_time_diff_seconds is not None and td is not None and _as_int(td) < config.min_time_diff_seconds:
        return "too_early"
    if config.langs is not None and row.get("lang") is not None and str(row["lang"]) not in config.langs:
        return "lang"
    if _as_int(row.get("likes")) < config.min_likes:
        return "low_likes"
    return None


def _near_duplicates(vecs: np.ndarray, threshold: float, block: int = 1024) -> np.ndarray:
    """Greedy in order: True where a vector is within `threshold` cosine of an earlier kept one."""
    n = len(vecs)
    dup = np.zeros(n, dtype=bool)
    kept = faiss.IndexFlatIP(vecs.shape[1]) if n else None
    for start in range(0, n, block):
        blk = np.ascontiguousarray(vecs[start : start + block], dtype=np.float32)
        if kept is not None and kept.ntotal:
            dup_prev = kept.search(blk, 1)[0][:, 0] >= threshold
        else:
            dup_prev = np.zeros(len(blk), dtype=bool)
        sims = blk @ blk.T
        local: list[int] = []
        for j in range(len(blk)):
            if dup_prev[j] or (local and float(sims[j, local].max()) >= threshold):
                dup[start + j] = True
            else:
                local.append(j)
        if kept is not None and local:
            kept.add(blk[local])
    return dup


def select_examples(
    rows: list[dict[str, Any]], config: RetrievalConfig, encoder: Encoder | None = None
) -> tuple[list[Example], dict[str, int]]:
    """Filter rows, drop (near-)duplicate replies, keep one example per distinct tweet (most-liked reply).

    Returns the examples in file order and a count per rejection reason (the funnel).
    ``encoder`` is needed only for the near-duplicate rule (it embeds the candidate replies).
    """
    stats: Counter[str] = Counter()
    seen_replies: set[str] = set()
    candidates: list[Example] = []
    for pos, row in enumerate(rows):
        stats["rows"] += 1
        reason = reject_reason(row, config)
        reply_key = normalize_text(str(row.get("reply") or ""))
        if reason is None and config.dedup_reply_text and reply_key in seen_replies:
            reason = "duplicate_reply"
        if config.dedup_reply_text and reply_key:
            seen_replies.add(reply_key)  # first occurrence counts, passing or not (as in the seed)
        if reason is not None:
            stats[reason] += 1
            continue
        candidates.append(_example(row, pos))

    if config.near_dup_reply_threshold is not None and len(candidates) > 1:
        if encoder is None:
            raise ValueError("near_dup_reply_threshold needs an encoder")
        dup = _near_duplicates(encoder.encode([ex.reply for ex in candidates]), config.near_dup_reply_threshold)
        stats["near_duplicate_reply"] += int(dup.sum())
        candidates = [ex for ex, d in zip(candidates, dup) if not d]

    best: dict[str, Example] = {}  # normalized tweet -> example; dict keeps first-seen order
    for ex in candidates:
        tkey = normalize_text(ex.tweet)
        prev = best.get(tkey)
        if prev is not None:
            stats["same_tweet"] += 1
        if prev is None or ex.likes > prev.likes:
            best[tkey] = ex
    examples = sorted(best.values(), key=lambda ex: ex.row)
    stats["indexed"] = len(examples)
    return examples, dict(stats)


def _example(row: dict[str, Any], pos: int) -> Example:
    pair_id = row.get("pair_id")
    return Example(
        pair_id=str(pair_id) if pair_id is not None else f"row{pos}",
        tweet=str(row.get("tweet") or "").strip(),
        reply=str(row.get("reply") or "").strip(),
        likes=_as_int(row.get("likes")),
        row=pos,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file; malformed lines are skipped with a warning rather than killing the app."""
    rows: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                log.warning("%s:%d: skipping malformed JSON (%s)", path, n, exc)
                continue
            if isinstance(obj, dict):
                rows.append(obj)
            else:
                log.warning("%s:%d: skipping non-object line", path, n)
    return rows


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ExampleIndex:
    """Cosine search (inner product on unit vectors) over example tweets."""

    def __init__(
        self,
        examples: list[Example],
        index: faiss.Index,
        encoder: Encoder,
        config: RetrievalConfig,
        *,
        stats: dict[str, int] | None = None,
        source: str = "memory",
        path: Path | None = None,
    ) -> None:
        if index.ntotal != len(examples):
            raise ValueError(f"index has {index.ntotal} vectors for {len(examples)} examples")
        self.examples = examples
        self.index = index
        self.encoder = encoder
        self.config = config
        self.stats = stats or {}
        self.source = source  # "built", "loaded" or "memory"
        self.path = path  # the .faiss file, when persisted
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.examples)

    @classmethod
    def from_rows(
        cls, rows: Iterable[dict[str, Any]], encoder: Encoder, config: RetrievalConfig | None = None
    ) -> "ExampleIndex":
        """Build in memory (no persistence): for tests and ad-hoc data."""
        config = config or RetrievalConfig()
        examples, stats = select_examples(list(rows), config, encoder)
        return cls(examples, _flat_index(encoder, examples), encoder, config, stats=stats)

    def search(self, query: str, k: int | None = None) -> list[Retrieved]:
        """Top-k examples for a tweet, distinct tweets only, never the query tweet itself."""
        k = self.config.k if k is None else k
        if k <= 0 or not query or not query.strip() or self.index.ntotal == 0:
            return []
        qvec = self.encoder.encode([query])
        qkey = normalize_text(query)
        fetch = min(self.index.ntotal, k + 8)
        while True:
            with self._lock:
                scores, ids = self.index.search(qvec, fetch)
            out: list[Retrieved] = []
            seen: set[str] = set()
            for score, i in zip(scores[0].tolist(), ids[0].tolist()):
                if i < 0:
                    continue
                ex = self.examples[i]
                tkey = normalize_text(ex.tweet)
                # The query tweet itself (same text, or a near-identical copy) would leak its own reply.
                if tkey == qkey or score >= SELF_MATCH_SCORE or tkey in seen:
                    continue
                seen.add(tkey)
                out.append(Retrieved(ex.tweet, ex.reply, ex.likes, float(score), ex.pair_id))
                if len(out) == k:
                    return out
            if fetch >= self.index.ntotal:
                return out
            fetch = min(self.index.ntotal, fetch * 2)


def _flat_index(encoder: Encoder, examples: list[Example]) -> faiss.Index:
    index = faiss.IndexFlatIP(encoder.dim)
    if examples:
        vecs = encoder.encode([ex.tweet for ex in examples], show_progress=len(examples) > 5000)
        index.add(np.ascontiguousarray(vecs, dtype=np.float32))
    return index


def index_paths(dataset_path: Path, index_dir: Path | None = None) -> tuple[Path, Path]:
    """`<dir>/<dataset name>.faiss` and its `.faiss.json` metadata."""
    base = (index_dir if index_dir is not None else dataset_path.parent) / f"{dataset_path.name}.faiss"
    return base, base.with_name(base.name + ".json")


def _meta_header(dataset_sha: str, config: RetrievalConfig, encoder: Encoder) -> dict[str, Any]:
    """Everything that, if changed, makes a persisted index stale."""
    return {
        "version": META_VERSION,
        "dataset_sha256": dataset_sha,
        "config": config.filter_key(),
        "model_id": encoder.model_id,
        "dim": encoder.dim,
    }


def _try_load(
    faiss_path: Path,
    meta_path: Path,
    *,
    header: dict[str, Any],
    rows: list[dict[str, Any]],
    dim: int,
) -> tuple[faiss.Index, list[Example], dict[str, int]] | None:
    """The persisted index if it matches dataset, config and model exactly, else None. Never encodes."""
    if not (faiss_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        stale = [key for key, val in header.items() if meta.get(key) != val]
        if stale:
            log.info("index %s is stale (%s); rebuilding", faiss_path, ", ".join(stale))
            return None
        positions = meta["rows"]
        examples = [_example(rows[i], i) for i in positions]
        if [ex.pair_id for ex in examples] != meta["row_ids"]:
            return None
        blob = faiss_path.read_bytes()
        if sha256_bytes(blob) != meta.get("index_sha256"):
            log.warning("index %s does not match its metadata checksum; rebuilding", faiss_path)
            return None
        index = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
        if index.ntotal != len(examples) or index.d != dim:
            return None
        return index, examples, dict(meta.get("stats") or {})
    except (OSError, ValueError, RuntimeError, KeyError, IndexError, TypeError) as exc:
        log.warning("could not load index %s (%s); rebuilding", faiss_path, exc)
        return None


def _save(index: faiss.Index, faiss_path: Path, meta_path: Path, *, meta: dict[str, Any]) -> None:
    blob = faiss.serialize_index(index).tobytes()
    meta = {**meta, "index_sha256": sha256_bytes(blob)}
    # Index first, metadata last: a crash in between leaves a checksum mismatch → rebuild, never a wrong index.
    atomic_write_bytes(faiss_path, blob)
    atomic_write_bytes(meta_path, json.dumps(meta, ensure_ascii=False, indent=1).encode("utf-8"))


def _dir_writable(d: Path) -> bool:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(d, os.W_OK | os.X_OK)


def build_or_load(
    dataset_path: str | os.PathLike[str] = DEFAULT_DATASET,
    encoder: Encoder | None = None,
    config: RetrievalConfig | None = None,
    *,
    index_dir: str | os.PathLike[str] | None = None,
    fallback_dir: str | os.PathLike[str] | None = DEFAULT_FALLBACK_DIR,
) -> ExampleIndex:
    """Load the persisted index for this dataset + config, or build (and persist) it.

    Looks in ``index_dir`` if given, else next to the dataset and then in ``fallback_dir``
    (for read-only asset dirs). Writes to the first writable of those; if none is, the
    index lives in memory only. Loading never runs the model.
    """
    dataset_path = Path(dataset_path)
    encoder = encoder or get_encoder()
    config = config or RetrievalConfig()
    if not dataset_path.is_file():
        raise FileNotFoundError(f"retrieval dataset not found: {dataset_path}")

    header = _meta_header(sha256_bytes(dataset_path.read_bytes()), config, encoder)
    rows = read_jsonl(dataset_path)

    if index_dir is not None:
        dirs = [Path(index_dir)]
    else:
        dirs = [dataset_path.parent] + ([Path(fallback_dir)] if fallback_dir is not None else [])

    for d in dirs:
        fp, mp = index_paths(dataset_path, d)
        loaded = _try_load(fp, mp, header=header, rows=rows, dim=encoder.dim)
        if loaded is not None:
            index, examples, stats = loaded
            return ExampleIndex(examples, index, encoder, config, stats=stats, source="loaded", path=fp)

    examples, stats = select_examples(rows, config, encoder)
    index = _flat_index(encoder, examples)
    meta = {
        **header,
        "dataset": dataset_path.name,
        "rows": [ex.row for ex in examples],
        "row_ids": [ex.pair_id for ex in examples],
        "stats": stats,
    }
    for d in dirs:
        if not _dir_writable(d):
            continue
        fp, mp = index_paths(dataset_path, d)
        try:
            _save(index, fp, mp, meta=meta)
        except OSError as exc:
            log.warning("could not persist index to %s (%s)", d, exc)
            continue
        return ExampleIndex(examples, index, encoder, config, stats=stats, source="built", path=fp)
    log.warning("no writable index dir among %s; keeping the index in memory", [str(d) for d in dirs])
    return ExampleIndex(examples, index, encoder, config, stats=stats, source="built")
