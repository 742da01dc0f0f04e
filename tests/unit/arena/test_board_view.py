"""The Leaderboard's words and ranks, checked against hand counts and scipy."""

from __future__ import annotations

import math

from scipy import stats

from arena.board_view import arena_rank, comparison_sentence, leaderboard_rows, pair_rows, still_needed, votes_to_settle
from evaluation.ratings import compute_leaderboard, rank_upper_bounds
from generation.variants import friendly_name


def _battles(a: str, b: str, a_wins: int, b_wins: int, ties: int = 0) -> list[dict]:
    return (
        [{"model_a": a, "model_b": b, "winner": "model_a"}] * a_wins
        + [{"model_a": a, "model_b": b, "winner": "model_b"}] * b_wins
        + [{"model_a": a, "model_b": b, "winner": "tie"}] * ties
    )


def test_friendly_names():
    assert [friendly_name(x) for x in ("base", "rag", "lora:v1", "other")] == [
        "Base",
        "RAG few-shot",
        "LoRA: v1",
        "other",
    ]


def test_arena_rank_counts_only_statistically_better():
    cs = [
        {"ci_low": 1050, "ci_high": 1100},
        {"ci_low": 990, "ci_high": 1060},
        {"ci_low": 900, "ci_high": 1040},
        {"ci_low": 800, "ci_high": 900},
    ]
    # the 2nd overlaps the 1st; the 3rd's top (1040) is under the 1st's bottom (1050); the 4th is under the 1st and 2nd
    # (900 is not above 900, so the 3rd does not count).
    assert arena_rank(cs) == [1, 1, 2, 3]
    lo, hi = [c["ci_low"] for c in cs], [c["ci_high"] for c in cs]
    assert arena_rank(cs) == rank_upper_bounds(lo, hi).tolist()
    assert arena_rank([{"ci_low": None, "ci_high": None}, {"ci_low": None, "ci_high": None}]) == [1, 1]


def test_overlapping_contenders_share_rank_1_and_few_votes_are_preliminary():
    battles = _battles("lora:v1", "base", 3, 1) + _battles("base", "rag", 3, 2) + _battles("lora:v1", "rag", 2, 1)
    rows = leaderboard_rows(compute_leaderboard(battles, n_boot=100))
    assert [r[0] for r in rows] == [1, 1, 1]
    assert all(r[1].endswith("(preliminary)") for r in rows)
    assert {r[1].split(" (")[0] for r in rows} == {"Base", "RAG few-shot", "LoRA: v1"}


def test_clear_winner_ranks_above_and_is_not_preliminary():
    board = compute_leaderboard(_battles("lora:v1", "base", 45, 5), n_boot=200)
    rows = leaderboard_rows(board)
    assert rows[0][:2] == [1, "LoRA: v1"] and rows[1][:2] == [2, "Base"]


def test_votes_to_settle_matches_power_of_the_exact_sign_test():
    n = votes_to_settle(0)
    h = 2 * math.asin(math.sqrt(0.6)) - 2 * math.asin(math.sqrt(0.5))
    assert n == math.ceil(((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) / h) ** 2) == 194
    # the exact two-sided sign test at that n and a 60/40 split has about 80% power (scipy's binomial)
    crit = next(k for k in range(n // 2, n + 1) if stats.binomtest(k, n, 0.5).pvalue < 0.05)
    power = stats.binom.sf(crit - 1, n, 0.6) + stats.binom.cdf(n - crit, n, 0.6)
    assert 0.75 < power < 0.85
    assert votes_to_settle(14) == 180


def test_sentences():
    tied = compute_leaderboard(_battles("lora:v1", "base", 7, 7, ties=2), n_boot=0)["pairs"][0]
    assert comparison_sentence(tied) in (
        "LoRA: v1 and Base are tied so far; about 180 more votes would settle a 10-point difference.",
        "Base and LoRA: v1 are tied so far; about 180 more votes would settle a 10-point difference.",
    )
    few = compute_leaderboard(_battles("lora:v1", "base", 3, 1), n_boot=0)["pairs"][0]
    s = comparison_sentence(few)
    assert (
        s.startswith("Only 4 decisive votes between LoRA: v1 and Base so far, too few to say;")
        and "190 more votes" in s
    )
    win = compute_leaderboard(_battles("lora:v1", "base", 30, 10), n_boot=0)["pairs"][0]
    p = stats.binomtest(30, 40, 0.5).pvalue
    assert (
        comparison_sentence(win)
        == f"LoRA: v1 beats Base: preferred in 75% of 40 decisive votes, unlikely to be chance (adjusted p {p:.3f})."
    )


def test_pair_rows_and_votes_still_needed():
    board = compute_leaderboard(_battles("lora:v1", "base", 12, 8) + _battles("base", "rag", 5, 5), n_boot=0)
    rows = {r[0]: r for r in pair_rows(board)}
    r = rows["LoRA: v1 vs Base"]
    lo, hi = stats.binomtest(12, 20).proportion_ci(method="wilson")
    assert r[1] == "20 (20)" and r[2] == "12 / 8 / 0"
    assert r[3] == f"60% ({lo:.0%} – {hi:.0%})"
    assert r[4] == f"{stats.binomtest(12, 20).pvalue:.3f}"
    assert r[6] == f"{194 - 20:,}"
    tie = next(v for k, v in rows.items() if "RAG" in k)
    assert tie[6] == "– (no difference seen yet)"
    assert still_needed({"more_votes_for_power": 0}) == "0 (enough)"
