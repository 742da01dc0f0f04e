"""Arena ratings from battle records: Bradley-Terry fit, bootstrap CIs, rank bounds, length control, leaderboard.

Takes battle dicts only (model_a, model_b, winner, optional len_a/len_b -- Chatbot Arena's format); it never opens
the vote store. UI-free (numpy + scipy) so the Leaderboard tab, the CLI and the benchmarks share one implementation.
``compute_leaderboard`` is the entry point; the building blocks are public so tests can check each one in isolation.
Hypothesis tests and the logistic solver are evaluation.stats; the adapter verdict rule is evaluation.gates.

Conventions (also returned verbatim in ``compute_leaderboard(...)["scale"]``):

* Bradley-Terry (BT): ``P(i beats j) = sigmoid(beta_i - beta_j)``, fitted by
  maximum likelihood on aggregated pair counts.  A tie -- including
  "tie (bothbad)" -- counts as half a win for each side; both-bad votes are also
  counted separately.
* Rating scale: ``rating = 1000 + 400/ln(10) * beta`` so that a 400-point gap means
  10:1 odds, as in Elo / Chatbot Arena.  Anchor: ``mean(beta) = 0``, i.e. the
  average contender sits at 1000.  (We do not pin "base" to 1000: base may be
  absent, and a mean anchor keeps the CIs symmetric in meaning across contenders.)
  The anchor is not an extra constraint: with the L2 prior below, the penalised
  optimum always has ``sum(beta) = 0`` because the likelihood depends only on
  differences.
* Regularisation: a Gaussian prior ``beta ~ N(0, 1/l2)`` with ``l2 = 0.01`` (sd 10
  in log-odds, ~1700 rating points).  It only matters when the data separate
  (a contender with only wins), where it keeps the rating finite; with a few
  dozen votes per contender the shrinkage is < 0.1 % of the estimate.
* CIs: percentile bootstrap over battles, done by multinomial resampling of the
  aggregated (pair, outcome) counts -- exactly equivalent to resampling battles
  with replacement -- with all replicates refitted together by one batched,
  warm-started Newton iteration.
* Per-pair tests use *decisive* votes (ties dropped): Wilson CI, exact two-sided
  sign test, Cohen's h versus 0.5 and the 80 %-power vote estimate all refer to
  the decisive win rate; ``win_rate_a`` (ties as half) is reported alongside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from scipy import stats

from generation.variants import BASE, RAG, is_lora

from .gates import DecisionRule, decide
from .stats import LogisticConfig, cohens_h, holm, logistic_newton, num, sign_test, votes_for_power, wilson_ci

__all__ = [
    "SCALE",
    "BASE_RATING",
    "WINNER_VALUES",
    "SCALE_NOTE",
    "BTConfig",
    "ParsedBattles",
    "PairTable",
    "parse_battles",
    "aggregate",
    "fit_bt",
    "bootstrap_bt",
    "beta_to_rating",
    "rank_upper_bounds",
    "adapter_verdicts",
    "length_controlled_bt",
    "compute_leaderboard",
]

SCALE: float = 400.0 / math.log(10.0)  # rating points per unit of log-odds
BASE_RATING: float = 1000.0
WINNER_VALUES: tuple[str, ...] = ("model_a", "model_b", "tie", "tie (bothbad)")
_WINNER_CODE = {w: k for k, w in enumerate(WINNER_VALUES)}
A_WINS, B_WINS, TIE, BOTH_BAD = 0, 1, 2, 3
BTConfig = LogisticConfig  # the BT fit is a logistic fit: one solver, one set of knobs


SCALE_NOTE = (
    "rating = 1000 + 400/ln10 * beta; Bradley-Terry MLE with P(i beats j) = "
    "1/(1+exp(-(beta_i-beta_j))); anchor mean(beta)=0 (average contender = 1000); "
    "ties and 'tie (bothbad)' count as half a win each; Gaussian L2 prior "
    f"(precision {BTConfig.l2}) keeps undefeated contenders finite; 95% CIs are "
    "percentile bootstrap over battles; rank_ub = 1 + number of contenders whose "
    "CI lower bound exceeds this contender's CI upper bound."
)


# --------------------------------------------------------------------------- #
# Parsing and aggregation
# --------------------------------------------------------------------------- #
@dataclass
class ParsedBattles:
    """Per-battle integer codes; one pass over the dicts, everything else is numpy."""

    names: list[str]  # sorted contender names; codes index into this
    a: np.ndarray  # (N,) int64 contender code of model_a
    b: np.ndarray  # (N,) int64 contender code of model_b
    outcome: np.ndarray  # (N,) int8: 0 a wins, 1 b wins, 2 tie, 3 both bad
    len_a: np.ndarray | None  # (N,) float, NaN where missing; None if no battle had lengths
    len_b: np.ndarray | None
    n_self_dropped: int = 0

    @property
    def n(self) -> int:
        return int(self.a.size)


@dataclass
class PairTable:
    """Outcome counts per unordered pair (i < j): the sufficient statistic for BT."""

    names: list[str]
    i: np.ndarray  # (P,)
    j: np.ndarray  # (P,)
    counts: np.ndarray  # (P, 4): wins_i, wins_j, ties (plain), both_bad

    @property
    def k(self) -> int:
        return len(self.names)

    @property
    def ties(self) -> np.ndarray:
        """All ties, both-bad included (they are ties for the model)."""
        return self.counts[:, 2] + self.counts[:, 3]

    @property
    def n_battles(self) -> int:
        return int(self.counts.sum())


def _to_lengths(values: list[Any]) -> np.ndarray | None:
    """Lengths as float with NaN for missing/invalid/negative; None when none were given."""
    try:
        out = np.array(values, dtype=float)  # None -> NaN, vectorised
    except (TypeError, ValueError):  # odd entries (e.g. "n/a"): fall back to a tolerant pass

        def conv(v: Any) -> float:
            try:
                return float(v)
            except (TypeError, ValueError):
                return math.nan

        out = np.array([conv(v) for v in values], dtype=float)
    if out.ndim != 1 or not np.isfinite(out).any():
        return None
    out[~(out >= 0)] = np.nan
    return out


def parse_battles(battles: Iterable[dict]) -> ParsedBattles:
    """Validate winners and encode contenders; self-battles carry no information and are dropped."""
    rows = battles if isinstance(battles, list) else list(battles)
    try:
        ma = [r["model_a"] for r in rows]
        mb = [r["model_b"] for r in rows]
        wn = [r["winner"] for r in rows]
    except KeyError as exc:
        raise ValueError(f"every battle needs 'model_a', 'model_b' and 'winner'; missing {exc}") from None
    try:
        oc = np.array([_WINNER_CODE[w] for w in wn], dtype=np.int8)
    except (KeyError, TypeError):
        bad = next(w for w in wn if not isinstance(w, str) or w not in _WINNER_CODE)
        raise ValueError(f"unknown winner value {bad!r}; expected one of {list(WINNER_VALUES)}") from None
    index = dict.fromkeys(ma)  # insertion-ordered unique names, C speed
    index.update(dict.fromkeys(mb))
    bad_name = next((m for m in index if not isinstance(m, str)), None)
    if bad_name is not None:
        raise ValueError(f"contender names must be strings, got {bad_name!r}")
    index = {m: k for k, m in enumerate(index)}
    a = np.array([index[m] for m in ma], dtype=np.int64)
    b = np.array([index[m] for m in mb], dtype=np.int64)
    la = _to_lengths([r.get("len_a") for r in rows]) if rows else None
    lb = _to_lengths([r.get("len_b") for r in rows]) if rows else None
    if (la is None) != (lb is None):  # one side only: treat as missing everywhere
        la = lb = None

    keep = a != b
    n_self = int((~keep).sum())
    a, b, oc = a[keep], b[keep], oc[keep]
    if la is not None:
        la, lb = la[keep], lb[keep]
    # Re-code to sorted names (deterministic output) and drop contenders only seen in self-battles.
    first_seen = list(index)
    used = np.zeros(len(first_seen), dtype=bool)
    used[a] = True
    used[b] = True
    names = sorted(first_seen[k] for k in np.flatnonzero(used))
    remap = np.full(len(first_seen), -1, dtype=np.int64)
    pos = {nm: k for k, nm in enumerate(names)}
    for k, nm in enumerate(first_seen):
        remap[k] = pos.get(nm, -1)
    return ParsedBattles(names, remap[a], remap[b], oc, la, lb, n_self)


def aggregate(parsed: ParsedBattles) -> PairTable:
    """(pair, outcome) counts via one bincount; no per-vote Python loop."""
    k = len(parsed.names)
    if parsed.n == 0:
        z = np.zeros(0, dtype=np.int64)
        return PairTable(parsed.names, z, z, np.zeros((0, 4), dtype=np.int64))
    a, b, oc = parsed.a, parsed.b, parsed.outcome.astype(np.int64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    swapped = a > b
    oc = np.where(swapped & (oc < 2), 1 - oc, oc)  # orient a/b wins to lo/hi
    cnt = np.bincount((lo * k + hi) * 4 + oc, minlength=k * k * 4).reshape(k * k, 4)
    keys = np.flatnonzero(cnt.sum(axis=1))
    return PairTable(parsed.names, keys // k, keys % k, cnt[keys])


# --------------------------------------------------------------------------- #
# Bradley-Terry fitting: one batched penalised Newton solver for everything
# --------------------------------------------------------------------------- #
def _pair_design(i: np.ndarray, j: np.ndarray, k: int) -> np.ndarray:
    """Row per pair: +1 for i, -1 for j (the Chatbot Arena design)."""
    X = np.zeros((i.size, k))
    X[np.arange(i.size), i] = 1.0
    X[np.arange(i.size), j] = -1.0
    return X


def _pair_weights(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts (..., P, >=3) -> (wins_i + ties/2, wins_j + ties/2)."""
    ties = counts[..., 2:].sum(axis=-1)
    return counts[..., 0] + 0.5 * ties, counts[..., 1] + 0.5 * ties


def fit_bt(table: PairTable, cfg: BTConfig = BTConfig()) -> np.ndarray:
    """Penalised BT MLE beta (K,), mean zero, from the aggregated pair table."""
    if table.k == 0:
        return np.zeros(0)
    wi, wj = _pair_weights(table.counts.astype(float))
    theta, _ = logistic_newton(_pair_design(table.i, table.j, table.k), wi[None], wj[None], cfg)
    return theta[0] - theta[0].mean()  # already ~0 mean; removes round-off


def bootstrap_bt(
    table: PairTable,
    n_boot: int = 200,
    seed: int = 0,
    cfg: BTConfig = BTConfig(),
    beta_hat: np.ndarray | None = None,
) -> np.ndarray:
    """Bootstrap betas (n_boot, K): multinomial resampling of the (pair, outcome) cells.

    Drawing N battles with replacement and tallying them is exactly a multinomial draw
    over the cells with probabilities count/N, so this is the battle bootstrap without
    materialising battles.  All replicates are refitted in one batched Newton run,
    warm-started at the point estimate.
    """
    if n_boot <= 0 or table.k == 0:
        return np.zeros((0, table.k))
    cells = np.column_stack([table.counts[:, 0], table.counts[:, 1], table.ties]).astype(float)
    n_tot = cells.sum()
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(int(n_tot), (cells / n_tot).ravel(), size=n_boot).reshape(n_boot, -1, 3)
    wi, wj = _pair_weights(draws.astype(float))
    X = _pair_design(table.i, table.j, table.k)
    start = fit_bt(table, cfg) if beta_hat is None else beta_hat
    theta, _ = logistic_newton(X, wi, wj, cfg, theta0=start)
    return theta - theta.mean(axis=1, keepdims=True)


def beta_to_rating(beta: np.ndarray) -> np.ndarray:
    """Elo-like scale: 1000 + 400/ln10 * beta."""
    return BASE_RATING + SCALE * np.asarray(beta, dtype=float)


def _competition_rank(ratings: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """1 + number of strictly better ratings (equal ratings share a rank)."""
    r = np.asarray(ratings, dtype=float)
    return 1 + (r[None, :] > r[:, None] + tol).sum(axis=1)


def rank_upper_bounds(ci_low: np.ndarray, ci_high: np.ndarray) -> np.ndarray:
    """Chatbot Arena's rank: 1 + #contenders whose CI lower bound is strictly above my CI upper bound."""
    lo, hi = np.asarray(ci_low, dtype=float), np.asarray(ci_high, dtype=float)
    return 1 + (lo[None, :] > hi[:, None]).sum(axis=1)


# --------------------------------------------------------------------------- #
# Per-pair statistics (vectorised over pairs)
# --------------------------------------------------------------------------- #
# --------------------------------------------------------------------------- #
# Decision rule
# --------------------------------------------------------------------------- #
def adapter_verdicts(table: PairTable, rule: DecisionRule = DecisionRule()) -> list[dict[str, Any]]:
    """Verdict for each "lora:*" contender vs "base" and vs "rag" (when those contenders exist)."""
    names = table.names
    pos = {n: k for k, n in enumerate(names)}
    lookup = {(int(i), int(j)): r for r, (i, j) in enumerate(zip(table.i, table.j))}
    out = []
    for adapter in names:
        if not is_lora(adapter):
            continue
        for other in (BASE, RAG):
            if other not in pos:
                continue
            ia, io = pos[adapter], pos[other]
            r = lookup.get((min(ia, io), max(ia, io)))
            if r is None:
                w = losses = 0
                t = 0.0
            else:
                c = table.counts[r]
                w, losses = (int(c[0]), int(c[1])) if ia < io else (int(c[1]), int(c[0]))
                t = float(c[2] + c[3])
            out.append({"adapter": adapter, "versus": other, **decide(w, losses, t, rule)})
    return out


# --------------------------------------------------------------------------- #
# Length-controlled BT (style control)
# --------------------------------------------------------------------------- #
LENGTH_FEATURE = "(len_a - len_b) / (len_a + len_b)"


def length_controlled_bt(parsed: ParsedBattles, cfg: BTConfig = BTConfig()) -> tuple[dict[str, Any] | None, str | None]:
    """BT with the normalised length difference as a covariate (Chatbot Arena style control).

    Logistic model P(a wins) = sigmoid(beta_a - beta_b + gamma * f), f in [-1, 1];
    ties enter as y = 0.5.  gamma > 0 means the longer reply tends to win.  Ratings are
    then "what the ranking would be at equal length".  Compared against plain BT on the
    same battles so the rank changes isolate the length adjustment.
    Returns (result, None) or (None, reason) when lengths are unavailable.
    """
    if parsed.n == 0:
        return None, "no battles"
    if parsed.len_a is None or parsed.len_b is None:
        return None, "no battle carries len_a/len_b reply lengths"
    ok = np.isfinite(parsed.len_a) & np.isfinite(parsed.len_b)
    if not ok.any():
        return None, "no battle carries valid len_a/len_b reply lengths"
    la, lb = parsed.len_a[ok], parsed.len_b[ok]
    tot = la + lb
    f = np.divide(la - lb, tot, out=np.zeros_like(tot), where=tot > 0)
    if not np.any(f != 0):
        return None, "all paired replies have equal length; the length effect is not identifiable"
    sub = ParsedBattles(parsed.names, parsed.a[ok], parsed.b[ok], parsed.outcome[ok], None, None)
    present = np.zeros(len(parsed.names), dtype=bool)
    present[sub.a] = present[sub.b] = True
    if present.sum() < 2:
        return None, "fewer than two contenders have battles with lengths"
    keep = np.flatnonzero(present)
    remap = np.full(len(parsed.names), -1)
    remap[keep] = np.arange(keep.size)
    names = [parsed.names[k] for k in keep]
    sub = ParsedBattles(names, remap[sub.a], remap[sub.b], sub.outcome, None, None)
    k = len(names)

    n = sub.n
    X = np.zeros((n, k + 1))
    X[np.arange(n), sub.a] = 1.0
    X[np.arange(n), sub.b] = -1.0
    X[:, k] = f
    y = np.where(sub.outcome == A_WINS, 1.0, np.where(sub.outcome == B_WINS, 0.0, 0.5))
    theta, hess = logistic_newton(X, y[None], (1.0 - y)[None], cfg)
    beta = theta[0, :k] - theta[0, :k].mean()
    gamma = float(theta[0, k])
    se = float(math.sqrt(np.linalg.inv(hess[0])[k, k]))
    z = gamma / se
    plain = beta_to_rating(fit_bt(aggregate(sub), cfg))
    lc = beta_to_rating(beta)
    rank_plain, rank_lc = _competition_rank(plain), _competition_rank(lc)
    order = np.lexsort((np.array(names), -lc))
    rows = [
        {
            "name": names[c],
            "rating": num(lc[c]),
            "rating_plain": num(plain[c]),
            "rating_shift": num(lc[c] - plain[c]),
            "rank": int(rank_lc[c]),
            "rank_plain": int(rank_plain[c]),
            "rank_change": int(rank_plain[c] - rank_lc[c]),  # > 0: moves up once length is controlled
        }
        for c in order
    ]
    moved = [
        {"name": r["name"], "from": r["rank_plain"], "to": r["rank"], "change": r["rank_change"]}
        for r in rows
        if r["rank_change"] != 0
    ]
    direction = "longer" if gamma > 0 else "shorter"
    return {
        "feature": LENGTH_FEATURE,
        "n_battles_used": int(n),
        "length_coef": num(gamma),
        "length_coef_se": num(se),
        "length_coef_z": num(z),
        "length_coef_p": num(2 * stats.norm.sf(abs(z))),
        "length_coef_rating_points": num(gamma * SCALE),
        "interpretation": (
            f"gamma = {gamma:.3f} (SE {se:.3f}): the {direction} reply is favoured; an all-length "
            f"advantage (feature = 1) is worth {abs(gamma) * SCALE:.0f} rating points."
        ),
        "contenders": rows,
        "rank_changes": moved,
        "n_rank_changes": len(moved),
        "max_abs_rank_change": max((abs(m["change"]) for m in moved), default=0),
    }, None


# --------------------------------------------------------------------------- #
# Entry point
# --------------------------------------------------------------------------- #
def _empty_result() -> dict[str, Any]:
    return {
        "contenders": [],
        "pairs": [],
        "verdicts": [],
        "length_control": None,
        "length_control_reason": "no battles",
        "n_battles": 0,
        "n_both_bad": 0,
        "scale": SCALE_NOTE,
    }


def compute_leaderboard(battles: Iterable[dict], n_boot: int = 200, seed: int = 0, min_votes: int = 10) -> dict:
    """Everything the Leaderboard tab and CLI show, as a JSON-serialisable dict.

    Battles use Chatbot Arena's format (model_a, model_b, winner; optional len_a/len_b).
    Raises ValueError on an unknown winner value.  Floats are plain Python floats and
    undefined values are None (never NaN).  ``length_control`` is None when lengths are
    missing, with the reason in ``length_control_reason``.
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    cfg = BTConfig()
    parsed = parse_battles(battles)
    if parsed.n == 0:
        return _empty_result()
    table = aggregate(parsed)
    k = table.k

    beta = fit_bt(table, cfg)
    rating = beta_to_rating(beta)
    boot = beta_to_rating(bootstrap_bt(table, n_boot, seed, cfg, beta_hat=beta))
    if boot.shape[0]:
        ci_low, ci_high = np.percentile(boot, [2.5, 97.5], axis=0)
        rank_ub = rank_upper_bounds(ci_low, ci_high)
    else:
        ci_low = ci_high = np.full(k, np.nan)
        rank_ub = None
    rank = _competition_rank(rating)

    # Per-contender tallies straight from the pair table.
    c = table.counts
    wins = np.bincount(table.i, c[:, 0], k) + np.bincount(table.j, c[:, 1], k)
    losses = np.bincount(table.i, c[:, 1], k) + np.bincount(table.j, c[:, 0], k)
    ties = np.bincount(table.i, table.ties, k) + np.bincount(table.j, table.ties, k)
    both_bad = np.bincount(table.i, c[:, 3], k) + np.bincount(table.j, c[:, 3], k)
    votes = wins + losses + ties
    order = np.lexsort((np.array(table.names), -rating))
    contenders = [
        {
            "name": table.names[m],
            "rating": num(rating[m]),
            "ci_low": num(ci_low[m]),
            "ci_high": num(ci_high[m]),
            "rank": int(rank[m]),
            "rank_ub": int(rank_ub[m]) if rank_ub is not None else None,
            "votes": int(votes[m]),
            "wins": int(wins[m]),
            "losses": int(losses[m]),
            "ties": int(ties[m]),
            "both_bad": int(both_bad[m]),
            "win_rate": num((wins[m] + ties[m] / 2) / votes[m]),
        }
        for m in order
    ]

    # Pairs, oriented so "a" is the higher-rated contender.
    flip = rating[table.i] < rating[table.j]
    pa = np.where(flip, table.j, table.i)
    pb = np.where(flip, table.i, table.j)
    a_w = np.where(flip, c[:, 1], c[:, 0])
    b_w = np.where(flip, c[:, 0], c[:, 1])
    t = table.ties
    n = a_w + b_w + t
    dec = a_w + b_w
    with np.errstate(invalid="ignore", divide="ignore"):
        p_dec = a_w / dec
    w_lo, w_hi = wilson_ci(a_w, dec)
    pval = sign_test(a_w, dec)
    p_holm = holm(pval)
    h = cohens_h(p_dec)
    pos = np.empty(k, dtype=np.int64)
    pos[order] = np.arange(k)
    pair_order = np.lexsort((pos[pb], pos[pa]))
    pairs = [
        {
            "a": table.names[pa[r]],
            "b": table.names[pb[r]],
            "n": int(n[r]),
            "a_wins": int(a_w[r]),
            "b_wins": int(b_w[r]),
            "ties": int(t[r]),
            "both_bad": int(c[r, 3]),
            "win_rate_a": num((a_w[r] + t[r] / 2) / n[r]),
            "decisive_win_rate_a": num(p_dec[r]),
            "wilson_low": num(w_lo[r]),
            "wilson_high": num(w_hi[r]),
            "p_value": num(pval[r]),
            "p_holm": num(p_holm[r]),
            "cohens_h": num(h[r]),
            "more_votes_for_power": votes_for_power(num(h[r]), int(dec[r])),
        }
        for r in pair_order
    ]

    verdicts = adapter_verdicts(table, DecisionRule(min_votes=min_votes))
    lc, reason = length_controlled_bt(parsed, cfg)
    return {
        "contenders": contenders,
        "pairs": pairs,
        "verdicts": verdicts,
        "length_control": lc,
        "length_control_reason": reason,
        "n_battles": table.n_battles,
        "n_both_bad": int(c[:, 3].sum()),
        "scale": SCALE_NOTE + f" Bootstrap: n_boot={n_boot}, seed={seed}.",
    }
