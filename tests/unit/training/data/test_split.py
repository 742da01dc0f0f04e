"""The grouped, seeded train/eval split."""

from __future__ import annotations

import random

from training.data.funnel import apply_filters
from training.data.pairs import Pair
from training.data.split import split_pairs

from .sample_data import good

# ------------------------------------------------------------------ grouped split


def test_split_is_grouped_seeded_and_order_independent(sample: list[Pair]) -> None:
    kept = apply_filters(sample).kept
    train, evl = split_pairs(kept, eval_fraction=0.1, seed=7)
    assert len(train) + len(evl) == len(kept)
    assert not {p.tweet_id for p in train} & {p.tweet_id for p in evl}
    assert abs(len(evl) - 0.1 * len(kept)) <= 3
    shuffled = kept[:]
    random.Random(1).shuffle(shuffled)
    assert {p.pair_id for p in split_pairs(shuffled, 0.1, seed=7)[1]} == {p.pair_id for p in evl}
    assert {p.pair_id for p in split_pairs(kept, 0.1, seed=8)[1]} != {p.pair_id for p in evl}
    # conversation_id wins over tweet_id: replies deeper in one thread stay together
    conv = [good(pair_id=f"c{i}", tweet_id=f"t{i}", conversation_id="root" if i < 5 else None) for i in range(20)]
    tr, ev = split_pairs(conv, 0.3, seed=0)
    sides = {("train" if p in tr else "eval") for p in conv[:5]}
    assert len(sides) == 1
    assert split_pairs([good()], 0.1) == ([good()], [])
