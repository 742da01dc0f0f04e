"""Active pair sampling: BT standard errors against the closed form, weights with a floor, the Arena uses them."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from arena.battles import ArenaConfig, BattleManager
from arena.sampling import PairTallies, SamplingConfig, active_weights, bt_with_cov, pair_scores, pairs_decided
from arena.store import VoteRecord, VoteStore


def test_two_contender_fit_matches_the_closed_form():
    beta, cov = bt_with_cov(["x", "y"], {("x", "y"): [60, 40, 0]})
    d = beta[0] - beta[1]
    assert d == pytest.approx(math.log(60 / 40), rel=0.02)  # MLE of a logistic with one parameter (the prior is weak)
    p = 0.6
    assert math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]) == pytest.approx(
        math.sqrt(1 / (100 * p * (1 - p))), rel=0.02
    )


def test_weights_favour_undecided_pairs_and_keep_a_floor():
    tallies = {("a", "b"): [180, 20, 0], ("b", "c"): [52, 48, 0]}  # a>>b settled; b~c open; a-c and others unvoted
    w = active_weights(["a", "b", "c", "d"], tallies, SamplingConfig(floor=0.2))
    assert sum(w.values()) == pytest.approx(1.0)
    assert min(w.values()) >= 0.2 / 6 - 1e-12
    assert w[("a", "b")] == pytest.approx(0.2 / 6, rel=0.05)  # decided: only the floor
    assert w[("b", "c")] > 3 * w[("a", "b")]
    assert pair_scores(["x", "y"], {})[("x", "y")] == pytest.approx(0.25)  # never voted: p = 1/2, intervals coincide
    assert active_weights(["x", "y", "z"], {}) == pytest.approx(
        {("x", "y"): 1 / 3, ("x", "z"): 1 / 3, ("y", "z"): 1 / 3}
    )
    assert active_weights(["a"], {}) == {}


def test_pairs_decided():
    assert not pairs_decided(["a", "b"], {("a", "b"): [6, 4, 0]})
    assert pairs_decided(["a", "b"], {("a", "b"): [80, 20, 0]})
    assert pairs_decided(
        ["a", "b", "c"], {("a", "b"): [80, 20, 0], ("b", "c"): [80, 20, 0]}
    )  # a-c follows by transitivity
    assert not pairs_decided(["a", "b", "c"], {("a", "b"): [80, 20, 0], ("b", "c"): [52, 48, 0]})


def test_tallies_orient_wins_to_the_sorted_pair():
    t = PairTallies(
        [
            {"model_a": "z", "model_b": "a", "winner": "model_a"},
            {"model_a": "a", "model_b": "z", "winner": "model_a"},
            {"model_a": "a", "model_b": "z", "winner": "tie (bothbad)"},
        ]
    )
    assert t.snapshot() == {("a", "z"): [1.0, 1.0, 1.0]}


def test_the_arena_draws_the_open_pair_more_often(tmp_path):
    store = VoteStore(tmp_path)
    k = 0
    for winner, loser, n in (("base", "rag", 150),):  # base vs rag: decided
        for _ in range(n):
            store.add_vote(
                VoteRecord(
                    battle_id=f"s{k}",
                    tweet="t",
                    contender_a=winner,
                    contender_b=loser,
                    reply_a="x",
                    reply_b="y",
                    vote="a" if k % 10 else "b",
                    session_hash="s",
                    client_hash="c",
                    app_version="t",
                )
            )
            k += 1
    names = ["base", "rag", "lora:x"]
    mgr = BattleManager(
        store, lambda: names, lambda n, t: ("ok", {}), rng=random.Random(3), config=ArenaConfig(salt="s")
    )
    draws = Counter(frozenset(mgr._draw_pair(names)) for _ in range(3000))
    decided = draws[frozenset(("base", "rag"))] / 3000
    assert decided < 0.12  # uniform would be 1/3; the floor alone gives 0.2/3
    assert mgr.pair_weights()[("base", "rag")] == pytest.approx(decided, abs=0.03)
    # a vote updates the tallies the sampler reads
    before = sum(sum(t) for t in mgr._tallies.snapshot().values())
    b = mgr.new_battle("sess", "hello")
    mgr.vote("sess", b.battle_id, "a", "client")
    assert sum(sum(t) for t in mgr._tallies.snapshot().values()) == before + 1
    with pytest.raises(ValueError, match="pair_sampling must be active or balanced"):
        BattleManager(
            store, lambda: names, lambda n, t: ("ok", {}), config=ArenaConfig(salt="s", pair_sampling="greedy")
        )
    store.close()
