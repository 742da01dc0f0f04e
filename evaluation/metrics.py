"""Evaluation metrics: reference overlap, diversity, length, judge win rates, score tests, judge-vs-human agreement.

UI-free (numpy/scipy + rouge_score). Statistics reuse evaluation.stats (Wilson CI, Mann-Whitney U,
Cohen's d, the one logistic solver) so the Leaderboard and the Evaluate tab agree on definitions.

* ROUGE-1/2/L: F1 with Porter stemming (``rouge_score``), the max over an item's references, averaged over items
  that have a reference.
* distinct-n (Li et al., 2016): unique n-grams / all n-grams over a variant's replies (lower-cased word tokens).
* Win rates count ties as half a win; the Wilson interval is on (wins + ties/2) of n. The decisive rate (ties
  dropped) is reported too, with its own Wilson interval. "unparsed" judgments are excluded and counted.
* Length-controlled win rate: logistic regression of the judge outcome (1 win, 0 loss, 0.5 tie) on the
  normalised length difference d = (len_x - len_y) / (len_x + len_y); the reported rate is sigmoid(intercept),
  the predicted win rate at equal length, with a Wald 95% CI from the intercept's standard error.
* Cohen's kappa between judge and humans on the categories a / b / tie (a human "both bad" counts as a tie).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import special, stats

from common.text import TWEET_LIMIT
from generation.chat import THINK_CLOSE, THINK_OPEN

from .stats import LogisticConfig, cohens_d, logistic_newton, mann_whitney, num, wilson_ci

__all__ = [
    "rouge_scores",
    "distinct_n",
    "length_stats",
    "text_metrics",
    "win_counts",
    "win_rate_stats",
    "length_controlled_win_rate",
    "score_summary",
    "score_tests",
    "cohens_kappa",
    "judge_vs_human",
    "engagement_from_scores",
]

_TOKEN = re.compile(r"[\w']+|[^\w\s]", re.UNICODE)


# --------------------------------------------------------------------------- #
# Text metrics
# --------------------------------------------------------------------------- #
_SCORER = None


def _scorer():
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    return _SCORER


def rouge_scores(predictions: Sequence[str], references: Sequence[Sequence[str] | str | None]) -> dict[str, Any]:
    """Mean ROUGE-1/2/L F1 over items with at least one reference (max over references per item)."""
    sc = _scorer()
    totals = {"rouge1": [], "rouge2": [], "rougeL": []}
    for pred, refs in zip(predictions, references):
        if isinstance(refs, str):
            refs = [refs]
        refs = [r for r in (refs or []) if r and r.strip()]
        if not refs:
            continue
        res = sc.score_multi(refs, pred or "") if len(refs) > 1 else sc.score(refs[0], pred or "")
        for k in totals:
            totals[k].append(res[k].fmeasure)
    out: dict[str, Any] = {k: (num(np.mean(v)) if v else None) for k, v in totals.items()}
    out["n_with_reference"] = len(totals["rouge1"])
    return out


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall((text or "").lower())


def distinct_n(texts: Iterable[str], n: int) -> float | None:
    """Unique n-grams / total n-grams across all texts; None when there is no n-gram at all."""
    grams: list[tuple[str, ...]] = []
    for t in texts:
        toks = _tokens(t)
        grams += [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def length_stats(texts: Sequence[str]) -> dict[str, Any]:
    lens = np.array([len(t or "") for t in texts], dtype=float)
    if lens.size == 0:
        return {
            "n": 0,
            "mean_chars": None,
            "median_chars": None,
            "p90_chars": None,
            "frac_over_280": None,
            "frac_think_leak": None,
            "frac_empty": None,
        }
    leak = [THINK_OPEN in (t or "") or THINK_CLOSE in (t or "") for t in texts]
    return {
        "n": int(lens.size),
        "mean_chars": num(lens.mean()),
        "median_chars": num(np.median(lens)),
        "p90_chars": num(np.percentile(lens, 90)),
        "frac_over_280": num((lens > TWEET_LIMIT).mean()),
        "frac_think_leak": num(np.mean(leak)),
        "frac_empty": num(np.mean([not (t or "").strip() for t in texts])),
    }


def text_metrics(replies: Sequence[str], references: Sequence[Sequence[str]] | None = None) -> dict[str, Any]:
    """Everything reference- and judge-free for one variant's shown replies."""
    out = {
        **length_stats(replies),
        "distinct_1": num(distinct_n(replies, 1)),
        "distinct_2": num(distinct_n(replies, 2)),
    }
    out.update(
        rouge_scores(replies, references)
        if references is not None
        else {"rouge1": None, "rouge2": None, "rougeL": None, "n_with_reference": 0}
    )
    return out


# --------------------------------------------------------------------------- #
# Judge outcomes
# --------------------------------------------------------------------------- #
def win_counts(verdicts: Iterable[str]) -> dict[str, int]:
    """Counts of 'a' / 'b' / 'tie' / 'unparsed' judgments (from side a's point of view)."""
    c = Counter(verdicts)
    unknown = set(c) - {"a", "b", "tie", "unparsed"}
    if unknown:
        raise ValueError(f"unknown verdicts {sorted(unknown)}; expected a, b, tie, unparsed")
    return {"wins": c["a"], "losses": c["b"], "ties": c["tie"], "unparsed": c["unparsed"]}


def win_rate_stats(wins: int, losses: int, ties: int, alpha: float = 0.05) -> dict[str, Any]:
    """Win rate (ties half) with a Wilson CI, and the decisive win rate (ties dropped) with its own."""
    n = wins + losses + ties
    dec = wins + losses
    lo, hi = wilson_ci(wins + ties / 2, n, alpha)
    dlo, dhi = wilson_ci(wins, dec, alpha)
    return {
        "n": int(n),
        "wins": int(wins),
        "losses": int(losses),
        "ties": int(ties),
        "win_rate": num((wins + ties / 2) / n) if n else None,
        "ci_low": num(lo),
        "ci_high": num(hi),
        "decisive": int(dec),
        "decisive_win_rate": num(wins / dec) if dec else None,
        "decisive_ci_low": num(dlo),
        "decisive_ci_high": num(dhi),
    }


_LENGTH_FIT = LogisticConfig(l2=1e-3, tol=1e-10)  # weak prior: only keeps separated data finite


def length_controlled_win_rate(
    verdicts: Sequence[str], len_a: Sequence[float], len_b: Sequence[float], alpha: float = 0.05
) -> dict[str, Any]:
    """Win rate of side a at zero length difference (see module doc). 'unparsed' verdicts are dropped."""
    v = np.array(list(verdicts), dtype=object)
    la, lb = np.asarray(len_a, dtype=float), np.asarray(len_b, dtype=float)
    keep = v != "unparsed"
    v, la, lb = v[keep], la[keep], lb[keep]
    n = int(v.size)
    if n < 3:
        return {"n": n, "win_rate_at_equal_length": None, "reason": "fewer than 3 judged pairs"}
    y = np.where(v == "a", 1.0, np.where(v == "b", 0.0, 0.5))
    tot = la + lb
    d = np.divide(la - lb, tot, out=np.zeros_like(tot), where=tot > 0)
    raw = float(y.mean())
    if np.allclose(d, 0):
        return {
            "n": n,
            "win_rate_at_equal_length": num(raw),
            "raw_win_rate": num(raw),
            "length_coef": None,
            "reason": "all pairs have equal length; nothing to control",
        }
    X = np.column_stack([np.ones(n), d])
    theta, neg_hess = logistic_newton(X, y[None], (1.0 - y)[None], _LENGTH_FIT)
    theta, cov = theta[0], np.linalg.inv(neg_hess[0])
    z = float(stats.norm.ppf(1 - alpha / 2))
    se0, se1 = math.sqrt(max(cov[0, 0], 0)), math.sqrt(max(cov[1, 1], 0))
    return {
        "n": n,
        "raw_win_rate": num(raw),
        "win_rate_at_equal_length": num(special.expit(theta[0])),
        "ci_low": num(special.expit(theta[0] - z * se0)),
        "ci_high": num(special.expit(theta[0] + z * se0)),
        "length_coef": num(theta[1]),
        "length_coef_se": num(se1),
        "length_coef_p": num(2 * stats.norm.sf(abs(theta[1] / se1))) if se1 > 0 else None,
        "mean_length_diff": num(d.mean()),
        "feature": "(len_a - len_b) / (len_a + len_b)",
        # every pair on one side of equal length: the rate at zero difference is an extrapolation
        "extrapolated": bool(np.all(d > 0) or np.all(d < 0)),
        "reason": None,
    }


# --------------------------------------------------------------------------- #
# Absolute scores
# --------------------------------------------------------------------------- #
def engagement_from_scores(scores: Sequence[int | None]) -> float | None:
    """Mean normalised judge score (s - 1) / 9 in [0, 1]: the engagement proxy when nothing better is given."""
    vals = [s for s in scores if s is not None]
    return num(np.mean([(s - 1) / 9 for s in vals])) if vals else None


def score_summary(scores: Sequence[int | None]) -> dict[str, Any]:
    vals = [int(s) for s in scores if s is not None]
    hist = Counter(vals)
    return {
        "n": len(vals),
        "n_unparsed": len(scores) - len(vals),
        "mean": num(np.mean(vals)) if vals else None,
        "median": num(statistics.median(vals)) if vals else None,
        "sd": num(np.std(vals, ddof=1)) if len(vals) > 1 else None,
        "engagement": engagement_from_scores(vals),
        "histogram": {str(k): hist.get(k, 0) for k in range(1, 11)},
    }


def score_tests(x: Sequence[int | None], y: Sequence[int | None]) -> dict[str, Any]:
    """Mann-Whitney U (x vs y, two-sided) and Cohen's d on the 1-10 scores; None where too few scores."""
    xs = [float(s) for s in x if s is not None]
    ys = [float(s) for s in y if s is not None]
    out: dict[str, Any] = {"n_x": len(xs), "n_y": len(ys), "mann_whitney": None, "cohens_d": None}
    if xs and ys:
        out["mann_whitney"] = mann_whitney(xs, ys).to_dict()
    if len(xs) >= 2 and len(ys) >= 2:
        out["cohens_d"] = cohens_d(xs, ys).to_dict()
    return out


# --------------------------------------------------------------------------- #
# Judge vs humans
# --------------------------------------------------------------------------- #
KAPPA_CATEGORIES = ("a", "b", "tie")


def cohens_kappa(r1: Sequence[str], r2: Sequence[str], categories: Sequence[str] = KAPPA_CATEGORIES) -> dict[str, Any]:
    """Unweighted Cohen's kappa = (p_o - p_e) / (1 - p_e), with p_e from the raters' marginals."""
    if len(r1) != len(r2):
        raise ValueError("both raters need the same number of ratings")
    n = len(r1)
    if n == 0:
        return {"n": 0, "kappa": None, "observed_agreement": None, "expected_agreement": None}
    idx = {c: i for i, c in enumerate(categories)}
    m = np.zeros((len(categories), len(categories)))
    for a, b in zip(r1, r2):
        if a not in idx or b not in idx:
            raise ValueError(f"rating outside {list(categories)}: {a!r} / {b!r}")
        m[idx[a], idx[b]] += 1
    po = np.trace(m) / n
    pe = float((m.sum(1) / n) @ (m.sum(0) / n))
    kappa = (po - pe) / (1 - pe) if pe < 1 else (1.0 if po == 1 else None)
    return {
        "n": n,
        "kappa": num(kappa),
        "observed_agreement": num(po),
        "expected_agreement": num(pe),
        "confusion": m.astype(int).tolist(),
        "categories": list(categories),
    }


def _interpret_kappa(k: float | None) -> str:
    if k is None:
        return "undefined"
    for cut, word in (
        (0.0, "worse than chance"),
        (0.2, "slight"),
        (0.4, "fair"),
        (0.6, "moderate"),
        (0.8, "substantial"),
    ):
        if k < cut:
            return word
    return "almost perfect"


def judge_vs_human(votes: Iterable[Any], judged: Iterable[dict]) -> dict[str, Any]:
    """Kappa on battles that the judge also judged: same tweet and the same two replies (either order).

    ``votes``: VoteRecord-like objects or dicts with tweet, reply_a, reply_b, vote. ``judged``: dicts with tweet,
    reply_a, reply_b, verdict ('a' / 'b' / 'tie'; from reply_a's side). Unparsed judgments are skipped.
    """
    index: dict[tuple[str, str, str], str] = {}
    for j in judged:
        if j.get("verdict") not in KAPPA_CATEGORIES:
            continue
        t, ra, rb = j["tweet"].strip(), j["reply_a"], j["reply_b"]
        index[(t, ra, rb)] = j["verdict"]
        index[(t, rb, ra)] = {"a": "b", "b": "a", "tie": "tie"}[j["verdict"]]
    human, judge = [], []
    for v in votes:
        g = v.get if isinstance(v, dict) else (lambda k, _v=v: getattr(_v, k, None))
        key = ((g("tweet") or "").strip(), g("reply_a") or "", g("reply_b") or "")
        if key in index and g("vote") in ("a", "b", "tie", "both_bad"):
            human.append("tie" if g("vote") in ("tie", "both_bad") else g("vote"))
            judge.append(index[key])
    res = cohens_kappa(judge, human)
    res["interpretation"] = _interpret_kappa(res["kappa"])
    res["note"] = (
        (
            "battles in the vote store whose tweet and pair of replies the judge also judged; "
            "human 'both bad' counts as a tie"
        )
        if res["n"]
        else "no vote in the store matches a judged pair"
    )
    return res
