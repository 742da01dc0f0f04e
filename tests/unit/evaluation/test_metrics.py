"""Evaluation metrics and decision gates: hand-computed cases, cross-checks against scipy/statsmodels/rouge_score."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import special

from evaluation.gates import DecisionRule, Weights, composite_score, decide, phase0, phase4, rank_models, read_eval_loss
from evaluation.metrics import (
    cohens_kappa,
    distinct_n,
    engagement_from_scores,
    judge_vs_human,
    length_controlled_win_rate,
    length_stats,
    rouge_scores,
    score_summary,
    score_tests,
    text_metrics,
    win_counts,
    win_rate_stats,
)
from evaluation.stats import cohens_d, mann_whitney, wilson_ci


# ---------------------------------------------------------------- text metrics
def test_rouge_matches_rouge_score_and_takes_the_best_reference():
    from rouge_score import rouge_scorer

    sc = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    preds = ["the cats are sitting on the mat", "coffee first, then code", "no reference here"]
    refs = [["the cat sat on the mat"], ["code first then coffee", "coffee first, then code"], []]
    got = rouge_scores(preds, refs)
    assert got["n_with_reference"] == 2
    r1 = [sc.score(refs[0][0], preds[0])["rouge1"].fmeasure, 1.0]  # second item: exact match with its 2nd reference
    assert got["rouge1"] == pytest.approx(np.mean(r1))
    assert got["rougeL"] == pytest.approx(np.mean([sc.score(refs[0][0], preds[0])["rougeL"].fmeasure, 1.0]))
    assert sc.score(refs[0][0], preds[0])["rouge1"].fmeasure > 0.5  # stemming: cats ~ cat
    assert rouge_scores(["x"], [[]])["rouge1"] is None


def test_distinct_n_hand_computed():
    texts = ["the cat sat", "The cat ran"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)  # the, cat, sat, ran of 6 tokens
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # (the cat) twice
    assert distinct_n(["one"], 2) is None


def test_length_stats_over_280_and_think_leak():
    texts = ["a" * 10, "b" * 300, "<think>plan</think> hi", ""]
    st = length_stats(texts)
    assert st["n"] == 4 and st["frac_over_280"] == 0.25 and st["frac_think_leak"] == 0.25 and st["frac_empty"] == 0.25
    assert st["mean_chars"] == pytest.approx(np.mean([10, 300, 22, 0]))
    assert st["median_chars"] == pytest.approx(16) and st["p90_chars"] == pytest.approx(
        np.percentile([10, 300, 22, 0], 90)
    )
    tm = text_metrics(["hello there", "hello you"], [["hello there"], []])
    assert (
        tm["distinct_1"] == pytest.approx(3 / 4) and tm["rouge1"] == pytest.approx(1.0) and tm["n_with_reference"] == 1
    )


# ---------------------------------------------------------------- judge outcomes
def test_win_rate_uses_wilson_with_ties_half():
    c = win_counts(["a"] * 7 + ["b"] * 2 + ["tie"] + ["unparsed"] * 3)
    assert c == {"wins": 7, "losses": 2, "ties": 1, "unparsed": 3}
    st = win_rate_stats(c["wins"], c["losses"], c["ties"])
    lo, hi = wilson_ci(7.5, 10)
    assert (
        st["win_rate"] == 0.75
        and st["ci_low"] == pytest.approx(float(lo))
        and st["ci_high"] == pytest.approx(float(hi))
    )
    dlo, dhi = wilson_ci(7, 9)
    assert st["decisive_win_rate"] == pytest.approx(7 / 9) and st["decisive_ci_low"] == pytest.approx(float(dlo))
    assert st["ci_low"] < 0.75 < st["ci_high"]
    with pytest.raises(ValueError):
        win_counts(["A"])


def _synthetic(n: int, quality: float, seed: int = 0):
    """a is usually longer; the judge's P(a wins) = sigmoid(quality + 3 * length difference)."""
    rng = np.random.default_rng(seed)
    la = rng.integers(60, 260, n).astype(float)
    lb = la * rng.uniform(0.3, 1.2, n)  # mostly shorter
    d = (la - lb) / (la + lb)
    win = rng.random(n) < special.expit(quality + 3 * d)
    return ["a" if w else "b" for w in win], la, lb


def test_length_controlled_win_rate_removes_a_pure_length_preference():
    v, la, lb = _synthetic(600, quality=0.0)
    res = length_controlled_win_rate(v, la, lb)
    assert res["raw_win_rate"] > 0.6  # a looks better only because it is longer
    assert abs(res["win_rate_at_equal_length"] - 0.5) < 0.07
    assert res["length_coef"] == pytest.approx(3.0, abs=0.9) and res["length_coef_p"] < 1e-3
    assert res["ci_low"] < 0.5 < res["ci_high"]


def test_length_controlled_win_rate_keeps_a_real_advantage():
    v, la, lb = _synthetic(600, quality=1.0, seed=1)
    res = length_controlled_win_rate(v, la, lb)
    assert res["win_rate_at_equal_length"] == pytest.approx(special.expit(1.0), abs=0.07)
    assert res["ci_low"] > 0.5
    few = length_controlled_win_rate(["a", "unparsed"], [1, 2], [2, 1])
    assert few["win_rate_at_equal_length"] is None


def test_score_tests_reuse_significance():
    x, y = [8, 7, 9, 6, 8, None], [5, 6, 4, 6, 5, 3]
    st = score_tests(x, y)
    assert st["mann_whitney"] == mann_whitney([8, 7, 9, 6, 8], [5, 6, 4, 6, 5, 3]).to_dict()
    assert st["cohens_d"]["d"] == pytest.approx(cohens_d([8, 7, 9, 6, 8], [5, 6, 4, 6, 5, 3]).d)
    summ = score_summary(x)
    assert summ["n"] == 5 and summ["n_unparsed"] == 1 and summ["mean"] == pytest.approx(7.6)
    assert summ["histogram"]["8"] == 2 and summ["engagement"] == pytest.approx(
        np.mean([(s - 1) / 9 for s in [8, 7, 9, 6, 8]])
    )
    assert engagement_from_scores([1, 10]) == pytest.approx(0.5) and engagement_from_scores([None]) is None


# ---------------------------------------------------------------- kappa
JUDGE = ["a", "a", "b", "b", "tie", "a", "b", "tie", "a", "b"]
HUMAN = ["a", "b", "b", "b", "tie", "a", "a", "a", "a", "b"]


def test_cohens_kappa_hand_computed_and_statsmodels():
    # confusion (judge rows a/b/tie x human cols): [[3,1,0],[1,3,0],[1,0,1]]; po = 7/10
    # marginals judge .4/.4/.2, human .5/.4/.1 -> pe = .2 + .16 + .02 = .38; kappa = (.7-.38)/(.62)
    res = cohens_kappa(JUDGE, HUMAN)
    assert res["confusion"] == [[3, 1, 0], [1, 3, 0], [1, 0, 1]]
    assert res["observed_agreement"] == pytest.approx(0.7) and res["expected_agreement"] == pytest.approx(0.38)
    assert res["kappa"] == pytest.approx(0.32 / 0.62)
    from statsmodels.stats.inter_rater import cohens_kappa as sm_kappa

    assert res["kappa"] == pytest.approx(sm_kappa(np.array(res["confusion"])).kappa)
    assert cohens_kappa(["a", "b"], ["a", "b"])["kappa"] == 1.0
    assert cohens_kappa([], [])["kappa"] is None


def test_judge_vs_human_matches_battles_in_the_real_vote_store(tmp_path):
    from arena.store import VoteRecord, VoteStore

    judged = [
        {"tweet": f"tweet {i}", "reply_a": f"x{i}", "reply_b": f"y{i}", "verdict": v}
        for i, v in enumerate(["a", "b", "tie", "a", "unparsed"])
    ]
    with VoteStore(tmp_path) as store:

        def vote(bid, tweet, ca, cb, ra, rb, v):
            store.add_vote(VoteRecord(bid, tweet, ca, cb, ra, rb, v, "s", "c", "test"))

        vote("1", "tweet 0", "lora:x", "base", "x0", "y0", "a")  # agree (a)
        vote("2", "tweet 1", "base", "lora:x", "y1", "x1", "a")  # reversed order: human a = y1 = judge b: agree
        vote("3", "tweet 2", "lora:x", "base", "x2", "y2", "both_bad")  # both bad = tie: agree
        vote("4", "tweet 3", "lora:x", "base", "x3", "y3", "b")  # disagree
        vote("5", "tweet 4", "lora:x", "base", "x4", "y4", "a")  # judge unparsed: skipped
        vote("6", "other tweet", "lora:x", "base", "x0", "y0", "a")  # different tweet: no match
        votes = list(store.iter_votes())
    res = judge_vs_human(votes, judged)
    assert res["n"] == 4 and res["observed_agreement"] == pytest.approx(0.75)
    manual = cohens_kappa(["a", "a", "tie", "a"], ["a", "a", "tie", "b"])  # in each vote's own a/b frame
    assert res["kappa"] == pytest.approx(manual["kappa"])
    assert judge_vs_human([], judged)["n"] == 0


# ---------------------------------------------------------------- gates
@pytest.mark.parametrize(
    "base,verdict",
    [
        (7.2, "consider RAG first"),
        (7.0, "consider RAG first"),
        (6.9, "fine-tune"),
        (4.0, "fine-tune"),
        (3.9, "rethink the approach"),
        (1.0, "rethink the approach"),
    ],
)
def test_phase0_thresholds(base, verdict):
    assert phase0(base)["verdict"] == verdict


def test_phase0_rag_gate():
    assert phase0(5.0, 5.0)["rag_verdict"] == "use RAG"
    assert phase0(5.0, 6.1)["rag_verdict"] == "use RAG" and "use RAG" in phase0(5.0, 6.1)["explanation"]
    assert phase0(5.0, 4.9)["rag_verdict"] == "RAG below base"
    assert phase0(None)["verdict"] == "no data"


def test_phase4_uses_decide():
    rule = DecisionRule()
    res = phase4("lora:x", "base", 20, 5, 2, rule)
    assert res["verdict"] == "success" and res == {
        "adapter": "lora:x",
        "versus": "base",
        "wins": 20,
        "losses": 5,
        "ties": 2,
        **decide(20, 5, 2.0, rule),
    }
    assert phase4("lora:x", "rag", 3, 2, 0, rule)["verdict"] == "not enough votes"
    assert phase4("lora:x", "rag", 5, 15, 0, rule)["verdict"] == "failure"


def test_composite_with_and_without_eval_loss(tmp_path):
    got = composite_score(0.5, 0.6, 0.4)
    assert got["composite"] == pytest.approx(0.4 * 0.5 + 0.3 * 0.6 + 0.3 * (1 - 0.4)) and got["missing"] == []
    custom = composite_score(0.5, 0.6, 0.4, Weights(1.0, 0.0, 0.0))
    assert custom["composite"] == pytest.approx(0.5)
    none = composite_score(0.5, 0.6, None)
    assert (
        none["composite"] is None
        and "eval_loss" in none["note"]
        and none["partial"] == pytest.approx((0.2 + 0.18) / 0.7)
    )
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "metrics.json").write_text(json.dumps({"eval_loss": 0.4, "train_loss": 0.3}))
    (tmp_path / "bare").mkdir()
    assert read_eval_loss(tmp_path, "good") == 0.4 and read_eval_loss(tmp_path, "bare") is None
    rows = rank_models(
        ["base", "lora:good", "lora:bare"],
        {"base": 0.9, "lora:good": 0.5, "lora:bare": 0.7},
        {"base": 0.5, "lora:good": 0.6, "lora:bare": 0.5},
        {"lora:good": 0.4},
    )
    assert [r["contender"] for r in rows] == ["lora:good", "base", "lora:bare"]  # complete composites first
    assert rows[0]["rank"] == 1 and rows[1]["composite"] is None and "not a trained adapter" in rows[1]["note"]
