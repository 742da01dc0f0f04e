"""Tests for evaluation.ratings (and the verdict rule it applies from evaluation.gates): each statistic against a
reference implementation
(statsmodels / scipy / hand formulas) and the leaderboard against data with known truth."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from evaluation import gates
from evaluation import ratings as sig
from evaluation import stats as st
from evaluation.gates import DecisionRule
from evaluation.ratings import BTConfig, compute_leaderboard

NAMES = ["base", "lora:short", "lora:tone", "model_x", "rag"]  # already sorted


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def simulate(
    true_beta: np.ndarray,
    n: int,
    seed: int,
    names: list[str] | None = None,
    tie_rate: float = 0.0,
    mean_len: np.ndarray | None = None,
    gamma: float = 0.0,
) -> list[dict]:
    """Battles from a BT model, optionally with a length effect gamma * (la-lb)/(la+lb)."""
    rng = np.random.default_rng(seed)
    k = len(true_beta)
    names = names or [f"m{c}" for c in range(k)]
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k
    logit = true_beta[a] - true_beta[b]
    la = lb = None
    if mean_len is not None:
        la = np.round(mean_len[a] * rng.lognormal(0, 0.3, n)).astype(int) + 1
        lb = np.round(mean_len[b] * rng.lognormal(0, 0.3, n)).astype(int) + 1
        logit = logit + gamma * (la - lb) / (la + lb)
    win_a = rng.random(n) < 1 / (1 + np.exp(-logit))
    winner = np.where(win_a, "model_a", "model_b")
    winner = np.where(rng.random(n) < tie_rate, "tie", winner)
    out = []
    for r in range(n):
        d = {"model_a": names[a[r]], "model_b": names[b[r]], "winner": str(winner[r]), "tstamp": r}
        if la is not None:
            d["len_a"], d["len_b"] = int(la[r]), int(lb[r])
        out.append(d)
    return out


def battles(a: str, b: str, a_wins: int = 0, b_wins: int = 0, ties: int = 0, both_bad: int = 0) -> list[dict]:
    return (
        [{"model_a": a, "model_b": b, "winner": "model_a"}] * a_wins
        + [{"model_a": b, "model_b": a, "winner": "model_a"}] * b_wins  # reversed seat on purpose
        + [{"model_a": a, "model_b": b, "winner": "tie"}] * ties
        + [{"model_a": b, "model_b": a, "winner": "tie (bothbad)"}] * both_bad
    )


def by_name(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["contenders"]}


def to_rating(beta: np.ndarray) -> np.ndarray:
    beta = np.asarray(beta, dtype=float)
    return 1000 + 400 / math.log(10) * (beta - beta.mean())


# --------------------------------------------------------------------------- #
# Bradley-Terry
# --------------------------------------------------------------------------- #
def test_bt_recovers_known_strengths():
    true_beta = np.array([0.8, 0.4, 0.0, -0.3, -0.9])
    res = compute_leaderboard(simulate(true_beta, 20_000, seed=1), n_boot=200, seed=0)
    truth = dict(zip([f"m{c}" for c in range(5)], to_rating(true_beta)))
    rows = by_name(res)
    inside = 0
    for name, true_rating in truth.items():
        row = rows[name]
        assert abs(row["rating"] - true_rating) < 20, (name, row["rating"], true_rating)
        assert row["ci_low"] < row["rating"] < row["ci_high"]
        assert row["ci_high"] - row["ci_low"] < 40
        inside += row["ci_low"] <= true_rating <= row["ci_high"]
    assert inside >= 4
    assert [c["name"] for c in res["contenders"]] == ["m0", "m1", "m2", "m3", "m4"]
    assert [c["rank"] for c in res["contenders"]] == [1, 2, 3, 4, 5]
    assert res["n_battles"] == 20_000
    assert abs(np.mean([c["rating"] for c in res["contenders"]]) - 1000) < 1e-6  # mean anchor


def test_all_ties_give_equal_ratings_and_count_both_bad():
    data = (
        battles("base", "rag", ties=7, both_bad=3)
        + battles("rag", "lora:x", ties=5)
        + battles("lora:x", "base", both_bad=4)
    )
    res = compute_leaderboard(data, n_boot=50)
    ratings = [c["rating"] for c in res["contenders"]]
    assert np.allclose(ratings, 1000, atol=1e-6)
    assert {c["rank"] for c in res["contenders"]} == {1}
    assert res["n_both_bad"] == 7
    rows = by_name(res)
    assert rows["base"]["both_bad"] == 7 and rows["base"]["ties"] == 14
    assert rows["rag"]["both_bad"] == 3 and rows["rag"]["ties"] == 15
    assert all(c["win_rate"] == 0.5 for c in res["contenders"])


def test_tie_counts_as_half_a_win():
    # 1 win + 2 ties  ==  2 wins + 1 loss in half-win units (2 : 1)
    r1 = compute_leaderboard(battles("x", "y", a_wins=1, ties=2), n_boot=0)
    r2 = compute_leaderboard(battles("x", "y", a_wins=2, b_wins=1), n_boot=0)
    assert by_name(r1)["x"]["rating"] == pytest.approx(by_name(r2)["x"]["rating"], abs=1e-6)
    # and without regularisation the gap is exactly ln(2) on the beta scale
    t = sig.aggregate(sig.parse_battles(battles("x", "y", a_wins=1, ties=2)))
    beta = sig.fit_bt(t, BTConfig(l2=1e-12))
    assert beta[0] - beta[1] == pytest.approx(math.log(2), abs=1e-6)


def test_undefeated_contender_is_finite_and_top():
    data = (
        battles("lora:win", "base", a_wins=15)
        + battles("lora:win", "rag", a_wins=12)
        + battles("base", "rag", a_wins=10, b_wins=9, ties=3)
    )
    res = compute_leaderboard(data, n_boot=100)
    top = res["contenders"][0]
    assert top["name"] == "lora:win" and top["losses"] == 0
    for key in ("rating", "ci_low", "ci_high"):
        assert top[key] is not None and math.isfinite(top[key])
    assert top["rating"] > max(c["rating"] for c in res["contenders"][1:]) + 300
    assert top["rating"] < 3000  # the prior keeps it sane, not just finite


def test_bootstrap_reproducible_and_seed_dependent():
    data = simulate(np.array([0.3, 0.0, -0.3]), 3000, seed=5)
    a = compute_leaderboard(data, n_boot=100, seed=7)
    b = compute_leaderboard(data, n_boot=100, seed=7)
    c = compute_leaderboard(data, n_boot=100, seed=8)
    assert a == b
    assert [r["ci_low"] for r in a["contenders"]] != [r["ci_low"] for r in c["contenders"]]
    assert [r["rating"] for r in a["contenders"]] == [r["rating"] for r in c["contenders"]]


def test_bt_mle_matches_statsmodels_logit():
    sm = pytest.importorskip("statsmodels.api")
    data = simulate(np.array([0.5, 0.1, -0.2, -0.6]), 600, seed=3, tie_rate=0.15)
    parsed = sig.parse_battles(data)
    beta = sig.fit_bt(sig.aggregate(parsed), BTConfig(l2=1e-10))
    k = len(parsed.names)
    X = np.zeros((parsed.n, k))
    X[np.arange(parsed.n), parsed.a] = 1
    X[np.arange(parsed.n), parsed.b] = -1
    y = np.select([parsed.outcome == 0, parsed.outcome == 1], [1.0, 0.0], 0.5)
    params = sm.Logit(y, X[:, 1:]).fit(disp=0, tol=1e-12, maxiter=200).params  # contender 0 = reference
    np.testing.assert_allclose(beta[1:] - beta[0], params, atol=1e-6)
    # default (tiny) prior barely moves the estimate
    beta_default = sig.fit_bt(sig.aggregate(parsed))
    np.testing.assert_allclose(beta_default[1:] - beta_default[0], params, atol=5e-3)


def test_aggregation_orients_seats_correctly():
    data = [
        {"model_a": "b", "model_b": "a", "winner": "model_a"},
        {"model_a": "b", "model_b": "a", "winner": "model_b"},
        {"model_a": "a", "model_b": "b", "winner": "model_a"},
        {"model_a": "a", "model_b": "b", "winner": "model_a"},
        {"model_a": "b", "model_b": "a", "winner": "tie (bothbad)"},
        {"model_a": "a", "model_b": "a", "winner": "model_a"},  # self-battle: dropped
    ]
    parsed = sig.parse_battles(iter(data))  # generators are fine
    table = sig.aggregate(parsed)
    assert parsed.names == ["a", "b"] and parsed.n_self_dropped == 1
    assert table.counts.tolist() == [[3, 1, 0, 1]]
    res = compute_leaderboard(data, n_boot=0)
    assert res["n_battles"] == 5
    pair = res["pairs"][0]
    assert (pair["a"], pair["a_wins"], pair["b_wins"], pair["ties"], pair["both_bad"]) == ("a", 3, 1, 1, 1)
    assert res["contenders"][0]["ci_low"] is None and res["contenders"][0]["rank_ub"] is None


def test_multinomial_bootstrap_matches_battle_resampling():
    """Resampling cell counts must have the same spread as resampling battles."""
    data = simulate(np.array([0.4, 0.0, -0.4]), 1500, seed=11, tie_rate=0.1)
    parsed = sig.parse_battles(data)
    table = sig.aggregate(parsed)
    fast = sig.bootstrap_bt(table, n_boot=400, seed=0).std(axis=0)
    rng = np.random.default_rng(1)
    slow = []
    for _ in range(300):
        idx = rng.integers(0, parsed.n, parsed.n)
        sub = sig.ParsedBattles(parsed.names, parsed.a[idx], parsed.b[idx], parsed.outcome[idx], None, None)
        slow.append(sig.fit_bt(sig.aggregate(sub)))
    slow = np.std(slow, axis=0)
    assert np.all(fast / slow > 0.8) and np.all(fast / slow < 1.25), (fast, slow)


def test_rank_upper_bound():
    lo = np.array([1100, 1050, 1040, 900])
    hi = np.array([1200, 1120, 1060, 1000])
    # #others with lower bound > my upper bound
    assert sig.rank_upper_bounds(lo, hi).tolist() == [1, 1, 2, 4]


def test_pairs_table_fields():
    data = battles("lora:x", "base", a_wins=40, b_wins=25, ties=10, both_bad=5)
    res = compute_leaderboard(data, n_boot=20)
    (pair,) = res["pairs"]
    assert (pair["a"], pair["b"], pair["n"]) == ("lora:x", "base", 80)
    assert pair["win_rate_a"] == pytest.approx((40 + 7.5) / 80)
    assert pair["decisive_win_rate_a"] == pytest.approx(40 / 65)
    assert pair["p_value"] == pytest.approx(stats.binomtest(40, 65).pvalue)
    assert pair["p_holm"] == pytest.approx(pair["p_value"])  # a family of one
    assert pair["cohens_h"] == pytest.approx(2 * math.asin(math.sqrt(40 / 65)) - math.pi / 2)
    lo, hi = st.wilson_ci(40, 65)
    assert (pair["wilson_low"], pair["wilson_high"]) == pytest.approx((float(lo), float(hi)))
    assert pair["more_votes_for_power"] == st.votes_for_power(pair["cohens_h"], 65) > 0


def test_pairs_holm_adjusted_across_pairs():
    data = (
        battles("a", "b", a_wins=30, b_wins=12)
        + battles("a", "c", a_wins=25, b_wins=15)
        + battles("b", "c", a_wins=20, b_wins=18)
    )
    res = compute_leaderboard(data, n_boot=0)
    raw = [p["p_value"] for p in res["pairs"]]
    np.testing.assert_allclose([p["p_holm"] for p in res["pairs"]], st.holm(raw))
    assert all(p["p_holm"] >= p["p_value"] for p in res["pairs"])


# --------------------------------------------------------------------------- #
# Decision rule
# --------------------------------------------------------------------------- #
def test_decide_cases():
    success = gates.decide(30, 8, 2)
    assert success["verdict"] == "success"
    assert success["improvement"] == pytest.approx(31 / 9 - 1)
    assert success["effect_size"] == pytest.approx(2 * math.asin(math.sqrt(30 / 38)) - math.pi / 2)
    assert success["p_value"] == pytest.approx(stats.binomtest(30, 38).pvalue)
    # significant and >20% lift but small effect (h < 0.3) -> marginal
    small_effect = gates.decide(300, 240, 0)
    assert small_effect["p_value"] < 0.05 and small_effect["improvement"] > 0.2
    assert small_effect["effect_size"] < 0.3 and small_effect["verdict"] == "marginal"
    # improvement in the 10-20% band, not significant -> marginal
    band = gates.decide(23, 20, 0)
    assert band["improvement"] == pytest.approx(0.15) and band["p_value"] > 0.1
    assert band["verdict"] == "marginal"
    assert gates.decide(20, 20, 4)["verdict"] == "failure"
    worse = gates.decide(5, 25, 0)  # significant, but the adapter is worse
    assert worse["p_value"] < 0.05 and worse["verdict"] == "failure"
    # ties do not count toward the minimum: 7 decisive votes of 27
    few = gates.decide(6, 1, 20)
    assert few["decisive"] == 7 and few["verdict"] == "not enough votes"
    assert gates.decide(6, 1, 20, DecisionRule(min_votes=5))["verdict"] == "failure"  # p = 0.125, lift 0.6
    unbeaten = gates.decide(12, 0, 0)
    assert unbeaten["verdict"] == "success" and unbeaten["improvement"] is None


def test_verdicts_in_leaderboard():
    data = (
        battles("lora:good", "base", a_wins=30, b_wins=8, ties=2)
        + battles("lora:good", "rag", a_wins=23, b_wins=20)
        + battles("lora:meh", "base", a_wins=20, b_wins=20, ties=4)
        + battles("lora:meh", "rag", a_wins=3, b_wins=2)
        + battles("rag", "base", a_wins=50, b_wins=10)
        + battles("other", "base", a_wins=30)
    )  # not an adapter: never judged
    res = compute_leaderboard(data, n_boot=0)
    got = {(v["adapter"], v["versus"]): v["verdict"] for v in res["verdicts"]}
    assert got == {
        ("lora:good", "base"): "success",
        ("lora:good", "rag"): "marginal",
        ("lora:meh", "base"): "failure",
        ("lora:meh", "rag"): "not enough votes",
    }
    assert compute_leaderboard(data, n_boot=0, min_votes=3)["verdicts"][-1]["verdict"] != "not enough votes"
    v = res["verdicts"][0]
    assert set(v) == {
        "adapter",
        "versus",
        "improvement",
        "effect_size",
        "p_value",
        "decisive",
        "verdict",
        "explanation",
    }
    assert v["explanation"].startswith("success")
    assert "success" in gates.VERDICT_HELP and "lora:" in gates.VERDICT_HELP


def test_verdict_without_head_to_head_battles():
    data = battles("lora:x", "base", a_wins=12) + battles("rag", "base", a_wins=5, b_wins=5)
    got = {(v["adapter"], v["versus"]): v for v in compute_leaderboard(data, n_boot=0)["verdicts"]}
    assert got[("lora:x", "rag")]["verdict"] == "not enough votes"
    assert got[("lora:x", "rag")]["decisive"] == 0


# --------------------------------------------------------------------------- #
# Length control
# --------------------------------------------------------------------------- #
def _order(rows: list[dict]) -> list[str]:
    return [r["name"] for r in rows]


@pytest.mark.parametrize("gamma,verbose", [(2.5, 3), (-2.5, 0)])
def test_length_control_detects_length_bias_and_restores_ranking(gamma, verbose):
    true_beta = np.array([0.6, 0.3, 0.0, -0.3])
    mean_len = np.full(4, 150.0)
    mean_len[verbose] = 450.0  # one contender writes much longer replies
    data = simulate(true_beta, 20_000, seed=2, mean_len=mean_len, gamma=gamma)
    res = compute_leaderboard(data, n_boot=50)
    truth = ["m0", "m1", "m2", "m3"]
    lc = res["length_control"]
    assert res["length_control_reason"] is None
    assert _order(res["contenders"]) != truth  # raw BT is fooled by length
    assert _order(lc["contenders"]) == truth  # length-controlled BT is not
    assert np.sign(lc["length_coef"]) == np.sign(gamma)
    assert lc["length_coef"] == pytest.approx(gamma, abs=0.4)
    assert abs(lc["length_coef_z"]) > 5 and lc["length_coef_p"] < 1e-6
    assert lc["n_battles_used"] == 20_000 and lc["n_rank_changes"] > 0
    moved = {m["name"]: m for m in lc["rank_changes"]}
    assert moved[f"m{verbose}"]["to"] == verbose + 1
    true_ratings = to_rating(true_beta)
    err_raw = np.abs([by_name(res)[n]["rating"] - t for n, t in zip(truth, true_ratings)]).max()
    err_lc = np.abs([r["rating"] - t for r, t in zip(lc["contenders"], true_ratings)]).max()
    assert err_lc < 25 < err_raw


def test_length_control_no_bias_keeps_ranking():
    true_beta = np.array([0.6, 0.3, 0.0, -0.3])
    data = simulate(true_beta, 20_000, seed=4, mean_len=np.array([100.0, 300, 200, 150]), gamma=0.0)
    lc = compute_leaderboard(data, n_boot=0)["length_control"]
    assert abs(lc["length_coef_z"]) < 3.5 and abs(lc["length_coef"]) < 0.4
    assert lc["n_rank_changes"] == 0


def test_length_control_skips_without_lengths():
    res = compute_leaderboard(battles("a", "b", a_wins=5, b_wins=3), n_boot=0)
    assert res["length_control"] is None
    assert "len_a" in res["length_control_reason"]
    lc, reason = sig.length_controlled_bt(sig.parse_battles(battles("a", "b", a_wins=2)))
    assert lc is None and reason


def test_length_control_uses_battles_that_have_lengths():
    data = simulate(np.array([0.2, 0.0, -0.2]), 2000, seed=9, mean_len=np.array([100.0, 100, 100]), gamma=1.0)
    for d in data[:500]:
        del d["len_a"], d["len_b"]
    data[600]["len_a"] = None
    lc = compute_leaderboard(data, n_boot=0)["length_control"]
    assert lc["n_battles_used"] == 1499


# --------------------------------------------------------------------------- #
# Entry point contract
# --------------------------------------------------------------------------- #
def test_leaderboard_json_round_trip_without_nan():
    data = simulate(
        np.array([0.3, 0.0, -0.3, 0.1, 0.2]),
        800,
        seed=6,
        names=NAMES,
        tie_rate=0.1,
        mean_len=np.array([120.0, 200, 150, 130, 180]),
        gamma=0.5,
    )
    data += battles("lora:new", "base", a_wins=4)  # sparse contender: undefined stats must be None, not NaN
    res = compute_leaderboard(data, n_boot=30)
    text = json.dumps(res, allow_nan=False)
    assert json.loads(text) == res
    assert set(res) >= {"contenders", "pairs", "verdicts", "length_control", "n_battles", "n_both_bad", "scale"}
    assert set(res["contenders"][0]) == {
        "name",
        "rating",
        "ci_low",
        "ci_high",
        "rank",
        "rank_ub",
        "votes",
        "wins",
        "losses",
        "ties",
        "both_bad",
        "win_rate",
    }
    assert set(res["pairs"][0]) >= {
        "a",
        "b",
        "n",
        "a_wins",
        "b_wins",
        "ties",
        "win_rate_a",
        "wilson_low",
        "wilson_high",
        "p_value",
        "p_holm",
        "cohens_h",
        "more_votes_for_power",
    }
    ratings = [c["rating"] for c in res["contenders"]]
    assert ratings == sorted(ratings, reverse=True)
    assert all(type(c["rating"]) is float and type(c["votes"]) is int for c in res["contenders"])
    assert "400/ln10" in res["scale"]


def test_empty_input():
    for empty in ([], iter(()), [{"model_a": "x", "model_b": "x", "winner": "tie"}]):
        res = compute_leaderboard(empty)
        assert res["contenders"] == res["pairs"] == res["verdicts"] == []
        assert res["n_battles"] == 0 and res["length_control"] is None
        json.dumps(res, allow_nan=False)


@pytest.mark.parametrize("bad", ["A", "draw", None, "tie(bothbad)"])
def test_bad_winner_raises_naming_the_value(bad):
    data = battles("a", "b", a_wins=3) + [{"model_a": "a", "model_b": "b", "winner": bad}]
    with pytest.raises(ValueError, match=repr(bad).replace("(", r"\(").replace(")", r"\)")):
        compute_leaderboard(data)


def test_missing_field_raises_value_error():
    with pytest.raises(ValueError, match="model_b"):
        compute_leaderboard([{"model_a": "a", "winner": "tie"}])
