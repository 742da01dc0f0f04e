"""Semantic (near-duplicate) dedup of replies with MiniLM embeddings + FAISS.

Why: generic replies reworded slightly ("Ship small, ship often…") would otherwise be learned as a
template. Neighbours come from FAISS range search (inner product on unit vectors = cosine), so the
cost is one BLAS matrix product per query batch, never a Python O(n²) loop. Selection is greedy in
engagement order (likes + 2·retweets, see pairs.engagement): the best pair of a cluster is kept
and its neighbours are dropped with reason "near_duplicate" and the kept pair_id. Greedy rather than
union-find so a chain A~B~C with A !~ C keeps C (it is not a duplicate of anything kept).

Embeddings come from retrieval.encoder, cached by text hash, so a re-run embeds nothing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from .pairs import Dropped, Pair, engagement

log = logging.getLogger(__name__)

__all__ = ["SemanticDedupConfig", "DedupResult", "near_duplicate_neighbors", "semantic_dedup"]


@dataclass(frozen=True)
class SemanticDedupConfig:
    """Near-duplicate settings.

    threshold: the seed suggests cosine > 0.9; we use 0.85 because on assets/sample_pairs.jsonl one of the
    six listed near-duplicate pairs (p0050/p0053) scores 0.862 while the closest unrelated pair scores 0.69.
    """

    threshold: float = 0.85
    batch_size: int = 4096  # queries per FAISS range_search call (bounds result memory)
    index: str = "auto"  # "flat" (exact), "ivf" (approximate, for millions), "auto": flat up to flat_max
    flat_max: int = 200_000
    nprobe: int = 16


@dataclass
class DedupResult:
    kept: list[Pair]
    dropped: list[Dropped]


def _build_index(emb: np.ndarray, cfg: SemanticDedupConfig) -> Any:
    import faiss

    n, d = emb.shape
    kind = cfg.index if cfg.index != "auto" else ("flat" if n <= cfg.flat_max else "ivf")
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))  # FAISS wants ≥39 training points per list
        quant = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        sample = emb[rng.choice(n, size=min(n, nlist * 256), replace=False)]
        index.train(sample)
        index.nprobe = min(cfg.nprobe, nlist)
    else:
        raise ValueError(f"unknown index kind {cfg.index!r}; expected 'flat', 'ivf' or 'auto'")
    index.add(emb)
    return index


def near_duplicate_neighbors(
    emb: np.ndarray, cfg: SemanticDedupConfig = SemanticDedupConfig()
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (i, neighbour ids, similarities) for every row with cosine > threshold (self excluded).

    ``emb`` must be L2-normalized float32 (the encoder's output).
    """
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    n = emb.shape[0]
    if n < 2:
        return
    index = _build_index(emb, cfg)
    for start in range(0, n, cfg.batch_size):
        q = emb[start : start + cfg.batch_size]
        lims, sims, ids = index.range_search(q, float(cfg.threshold))
        for r in range(q.shape[0]):
            a, b = lims[r], lims[r + 1]
            if b - a <= 1:
                continue
            i = start + r
            nb, sm = ids[a:b], sims[a:b]
            mask = nb != i
            if mask.any():
                yield i, nb[mask], sm[mask]


def semantic_dedup(
    pairs: Sequence[Pair],
    config: SemanticDedupConfig = SemanticDedupConfig(),
    encoder: Any = None,
    cache_dir: str | None = None,
    embeddings: np.ndarray | None = None,
) -> DedupResult:
    """Drop replies that say the same thing as a higher-engagement reply (cosine > threshold).

    ``encoder``: anything with ``encode(list[str]) -> (n, d) unit vectors``; default the shared MiniLM
    encoder (cache in ``cache_dir``, default ``./.cache/embeddings``). ``embeddings`` skips encoding.
    """
    pairs = list(pairs)
    if len(pairs) < 2:
        return DedupResult(kept=pairs, dropped=[])
    if embeddings is None:
        if encoder is None:
            from retrieval.encoder import get_encoder

            encoder = get_encoder(cache_dir)
        embeddings = encoder.encode([p.reply for p in pairs])
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.shape[0] != len(pairs):
        raise ValueError(f"got {emb.shape[0]} embeddings for {len(pairs)} pairs")

    neighbors: dict[int, tuple[np.ndarray, np.ndarray]] = {
        i: (nb, sm) for i, nb, sm in near_duplicate_neighbors(emb, config)
    }
    eng = np.array([engagement(p) for p in pairs], dtype=np.int64)
    order = np.lexsort((np.arange(len(pairs)), -eng))  # engagement desc, then input order
    rank = np.empty(len(pairs), dtype=np.int64)
    rank[order] = np.arange(len(pairs))
    removed: dict[int, tuple[int, float]] = {}  # dropped index → (kept index, similarity)
    for i in order:
        i = int(i)
        if i in removed or i not in neighbors:
            continue
        nb, sm = neighbors[i]
        for j, s in zip(nb.tolist(), sm.tolist()):
            if rank[j] > rank[i] and j not in removed:
                removed[j] = (i, s)
    kept = [p for i, p in enumerate(pairs) if i not in removed]
    dropped = [Dropped(pairs[j], "near_duplicate", pairs[k].pair_id) for j, (k, _s) in sorted(removed.items())]
    log.info(
        "semantic dedup: %d in, %d near-duplicates dropped (threshold %.2f)", len(pairs), len(dropped), config.threshold
    )
    return DedupResult(kept=kept, dropped=dropped)
