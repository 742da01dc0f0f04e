"""Semantic dedup with the real encoder + FAISS, and the range search on planted duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.encoder import Encoder
from training.data.dedup import SemanticDedupConfig, near_duplicate_neighbors, semantic_dedup
from training.data.funnel import apply_filters, run_funnel
from training.data.pairs import Pair, engagement

from .sample_data import NEAR_DUPS

# ------------------------------------------------------------------ semantic dedup (real encoder)


def test_semantic_dedup_finds_readme_near_duplicates(sample: list[Pair], encoder) -> None:
    res = run_funnel(sample, semantic=True, encoder=encoder)
    near = {d.pair.pair_id: d.detail for d in res.dropped if d.reason == "near_duplicate"}
    by_id = {p.pair_id: p for p in sample}
    assert len(near) == 6
    for a, b in NEAR_DUPS:
        winner, loser = (a, b) if engagement(by_id[a]) >= engagement(by_id[b]) else (b, a)
        assert near.get(loser) == winner, (a, b)
    assert res.funnel.dropped["near_duplicate"] == 6
    assert res.funnel.n_out == 198 == 260 - res.funnel.n_dropped
    # the seed's 0.9 misses p0050/p0053 (cosine 0.862): this is why the default is 0.85
    strict = semantic_dedup(apply_filters(sample).kept, SemanticDedupConfig(threshold=0.9), encoder=encoder)
    assert {d.pair.pair_id for d in strict.dropped} == set(near) - {"p0053"}


def test_semantic_dedup_rerun_uses_cache(sample: list[Pair], encoder) -> None:
    kept = apply_filters(sample).kept
    semantic_dedup(kept, encoder=encoder)
    fresh = Encoder(encoder.cache_dir)  # new instance, same on-disk cache
    res = semantic_dedup(kept, encoder=fresh)
    assert fresh.stats().misses == 0 and fresh.stats().hits == len({p.reply for p in kept})
    assert len(res.dropped) == 6


@pytest.mark.parametrize("index", ["flat", "ivf"])
def test_range_search_finds_planted_duplicates(index: str) -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3000, 384)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    src = rng.choice(3000, size=20, replace=False)
    dups = base[src] + 0.01 * rng.standard_normal((20, 384)).astype(np.float32)
    dups /= np.linalg.norm(dups, axis=1, keepdims=True)
    emb = np.vstack([base, dups])
    found = {
        (i, int(j))
        for i, nb, _ in near_duplicate_neighbors(emb, SemanticDedupConfig(threshold=0.9, index=index))
        for j in nb
        if i < j
    }
    planted = {(int(s), 3000 + k) for k, s in enumerate(src)}
    if index == "flat":
        assert found == planted
    else:  # approximate: allowed to miss a few, never to invent
        assert found <= planted and len(found) >= 18
