"""Significance statistics for Reply Arena's anonymous pairwise votes.

UI-free (numpy + scipy only) so the Gradio Leaderboard tab, the CLI and the
benchmarks share one implementation.  ``compute_leaderboard`` is the entry point;
the building blocks below are public so tests can check each one in isolation.

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
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np
from scipy import special, stats

__all__ = [
    "SCALE",
    "BASE_RATING",
    "WINNER_VALUES",
    "LORA_PREFIX",
    "SCALE_NOTE",
    "VERDICT_HELP",
    "BTConfig",
    "DecisionRule",
    "ParsedBattles",
    "PairTable",
    "MannWhitneyResult",
    "CohensDResult",
    "parse_battles",
    "aggregate",
    "fit_bt",
    "bootstrap_bt",
    "beta_to_rating",
    "rank_upper_bounds",
    "wilson_ci",
    "sign_test",
    "holm",
    "cohens_h",
    "votes_for_power",
    "decide",
    "adapter_verdicts",
    "length_controlled_bt",
    "mann_whitney",
    "cohens_d",
    "compute_leaderboard",
]

SCALE: float = 400.0 / math.log(10.0)  # rating points per unit of log-odds
BASE_RATING: float = 1000.0
WINNER_VALUES: tuple[str, ...] = ("model_a", "model_b", "tie", "tie (bothbad)")
_WINNER_CODE = {w: k for k, w in enumerate(WINNER_VALUES)}
A_WINS, B_WINS, TIE, BOTH_BAD = 0, 1, 2, 3
LORA_PREFIX = "lora:"
_Z975 = float(stats.norm.ppf(0.975))


@dataclass(frozen=True)
class BTConfig:
    """Fitting knobs for the Bradley-Terry / logistic fits.

    ``l2`` is the precision of the Gaussian prior on each beta (see module doc);
    ``max_step`` caps a Newton step (in log-odds) so separated data cannot overshoot.
    """

    l2: float = 1e-2
    tol: float = 1e-9
    max_iter: int = 100
    max_step: float = 4.0


SCALE_NOTE = (
    "rating = 1000 + 400/ln10 * beta; Bradley-Terry MLE with P(i beats j) = "
    "1/(1+exp(-(beta_i-beta_j))); anchor mean(beta)=0 (average contender = 1000); "
    "ties and 'tie (bothbad)' count as half a win each; Gaussian L2 prior "
    f"(precision {BTConfig.l2}) keeps undefeated contenders finite; 95% CIs are "
    "percentile bootstrap over battles; rank_ub = 1 + number of contenders whose "
    "CI lower bound exceeds this contender's CI upper bound."
)


@dataclass(frozen=True)
class DecisionRule:
    """The seed's go/no-go rule for a LoRA adapter against base or RAG."""

    alpha_success: float = 0.05
    alpha_marginal: float = 0.10
    min_improvement: float = 0.20
    marginal_improvement: float = 0.10
    min_effect: float = 0.3
    min_votes: int = 10


VERDICT_HELP = """\
How a LoRA adapter ("LoRA: name", stored as `lora:<name>`) is judged against Base and against RAG few-shot:

* improvement = (adapter wins + ties/2) / (other wins + ties/2) - 1,
  the relative lift in preference (0.25 = preferred 25% more often).
* effect size = Cohen's h of the adapter's decisive win rate vs 0.5,
  `h = 2*asin(sqrt(p)) - 2*asin(sqrt(0.5))`; 0.2 small, 0.5 medium, 0.8 large.
* p = two-sided exact sign test on decisive votes (ties dropped), not adjusted
  for multiple comparisons (the pairs table shows Holm-adjusted p-values).

Verdicts:
* not enough votes - fewer than the minimum number of decisive votes (default 10).
* success  - p < 0.05 AND improvement > 20% AND effect size > 0.3.
* marginal - adapter ahead (improvement > 0) and either p < 0.10 or
  improvement between 10% and 20%.
* failure  - anything else, including an adapter that is significantly worse.
"""


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
        raise ValueError(
            f"unknown winner value {bad!r}; expected one of {list(WINNER_VALUES)}"
        ) from None
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
def _neg_log_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, -x)


def _logistic_newton(
    X: np.ndarray,
    succ: np.ndarray,
    fail: np.ndarray,
    cfg: BTConfig,
    theta0: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Maximise sum s*log(sig(X@t)) + f*log(sig(-X@t)) - l2/2 |t|^2 for B problems at once.

    X is (R, D) and shared; succ/fail are (B, R) (fractional counts allowed: ties are
    0.5/0.5).  Damped Newton with step capping and batched backtracking, so separated
    data and bootstrap replicates converge together.  Returns (theta (B, D), the
    negative Hessian at the solution (B, D, D)) -- the latter gives Wald SEs.
    """
    succ = np.atleast_2d(np.asarray(succ, dtype=float))
    fail = np.atleast_2d(np.asarray(fail, dtype=float))
    nb, nr = succ.shape
    d = X.shape[1]
    tot = succ + fail
    theta = np.zeros((nb, d)) if theta0 is None else np.array(np.broadcast_to(theta0, (nb, d)), dtype=float)
    eye = cfg.l2 * np.eye(d)
    # Batched problems share X, so precompute the per-row outer products once (cheap for pair tables).
    outer = (X[:, :, None] * X[:, None, :]).reshape(nr, d * d) if nb > 1 and nr * d * d <= 4_000_000 else None

    def objective(t: np.ndarray) -> np.ndarray:
        z = t @ X.T
        return -(succ * _neg_log_sigmoid(z) + fail * _neg_log_sigmoid(-z)).sum(1) - 0.5 * cfg.l2 * (t * t).sum(1)

    def neg_hessian(w: np.ndarray) -> np.ndarray:
        if outer is not None:
            return (w @ outer).reshape(nb, d, d) + eye
        return np.stack([X.T @ (X * wb[:, None]) for wb in w]) + eye

    f_cur = objective(theta)
    for _ in range(cfg.max_iter):
        p = special.expit(theta @ X.T)
        grad = (succ - tot * p) @ X - cfg.l2 * theta
        hess = neg_hessian(tot * p * (1.0 - p))
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        biggest = np.abs(step).max(axis=1, keepdims=True)
        step *= np.minimum(1.0, cfg.max_step / np.maximum(biggest, 1e-300))
        scale = np.ones((nb, 1))
        for _ in range(40):  # backtracking only where the objective would drop
            cand = theta + scale * step
            f_new = objective(cand)
            bad = f_new < f_cur - 1e-12 * (1.0 + np.abs(f_cur))
            if not bad.any():
                break
            scale[bad] *= 0.5
        theta, f_cur = cand, f_new
        if float(np.abs(scale * step).max()) < cfg.tol:
            break
    p = special.expit(theta @ X.T)
    return theta, neg_hessian(tot * p * (1.0 - p))


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
    theta, _ = _logistic_newton(_pair_design(table.i, table.j, table.k), wi[None], wj[None], cfg)
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
    theta, _ = _logistic_newton(X, wi, wj, cfg, theta0=start)
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
def wilson_ci(k: Any, n: Any, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for k successes of n; NaN where n == 0.

    Preferred over the Wald interval because it stays inside [0, 1] and keeps
    near-nominal coverage for small n and extreme rates (common with few votes).
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    z = stats.norm.ppf(1 - alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    bad = n <= 0
    return np.where(bad, np.nan, centre - half), np.where(bad, np.nan, centre + half)


def sign_test(k: Any, n: Any) -> np.ndarray:
    """Two-sided exact binomial test of H0: p = 0.5; NaN where n == 0.

    For p = 0.5 the distribution is symmetric, so scipy.stats.binomtest's two-sided
    p-value is min(1, 2 * P(X <= min(k, n-k))); computed in one vectorised call.
    """
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    p = np.minimum(1.0, 2.0 * stats.binom.cdf(np.minimum(k, n - k), n, 0.5))
    return np.where(n > 0, p, np.nan)


def holm(pvals: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values; NaNs (untested pairs) stay NaN and are not counted."""
    p = np.asarray(pvals, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * q[order]))
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


def cohens_h(p1: Any, p2: Any = 0.5) -> np.ndarray:
    """Cohen's h = 2 asin(sqrt(p1)) - 2 asin(sqrt(p2)): effect size for proportions."""
    p1 = np.asarray(p1, dtype=float)
    p2 = np.asarray(p2, dtype=float)
    return 2 * np.arcsin(np.sqrt(p1)) - 2 * np.arcsin(np.sqrt(p2))


def votes_for_power(h: float | None, have: int, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Extra decisive votes for `power` at the current effect (two-sided, normal approx).

    n = ((z_{1-alpha/2} + z_power) / h)^2 for a one-sample test of p = 0.5 on the arcsine
    scale; returns max(0, ceil(n) - have), or None when h is 0/undefined (no finite n).
    """
    if h is None or not math.isfinite(h) or h == 0:
        return None
    n_req = ((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) / abs(h)) ** 2
    return max(0, int(math.ceil(n_req - 1e-9)) - int(have))


# --------------------------------------------------------------------------- #
# Decision rule
# --------------------------------------------------------------------------- #
def _num(x: Any) -> float | None:
    """Plain float for JSON; NaN/inf -> None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def decide(
    wins: int, losses: int, ties: float, rule: DecisionRule = DecisionRule()
) -> dict[str, Any]:
    """Apply the seed's rule to one adapter-vs-other tally (wins/losses from the adapter's side)."""
    decisive = int(wins + losses)
    num, den = wins + ties / 2, losses + ties / 2
    improvement = num / den - 1 if den > 0 else (math.inf if num > 0 else math.nan)
    p = float(sign_test(wins, decisive)) if decisive else math.nan
    h = float(cohens_h(wins / decisive)) if decisive else math.nan
    imp_txt = "unbounded (the other side has no wins or ties)" if improvement == math.inf else (
        f"{improvement:+.1%}" if math.isfinite(improvement) else "n/a")
    facts = (f"{wins} wins / {losses} losses / {ties:g} ties; improvement {imp_txt}, "
             f"Cohen's h {h:.2f}, sign-test p = {p:.3g}" if decisive else
             f"{wins} wins / {losses} losses / {ties:g} ties")
    if decisive < rule.min_votes:
        verdict = "not enough votes"
        why = f"only {decisive} decisive votes, need {rule.min_votes}"
    elif p < rule.alpha_success and improvement > rule.min_improvement and h > rule.min_effect:
        verdict = "success"
        why = (f"p < {rule.alpha_success}, improvement > {rule.min_improvement:.0%} "
               f"and effect size > {rule.min_effect}")
    elif improvement > 0 and (p < rule.alpha_marginal
                              or rule.marginal_improvement <= improvement <= rule.min_improvement):
        verdict = "marginal"
        why = "adapter ahead but not all success criteria met"
    else:
        verdict = "failure"
        why = ("the adapter is not ahead" if not improvement > 0 else
               f"p >= {rule.alpha_marginal} and improvement outside the "
               f"{rule.marginal_improvement:.0%}-{rule.min_improvement:.0%} marginal band")
    return {
        "improvement": _num(improvement),
        "effect_size": _num(h),
        "p_value": _num(p),
        "decisive": decisive,
        "verdict": verdict,
        "explanation": f"{verdict}: {why} ({facts}).",
    }


def adapter_verdicts(table: PairTable, rule: DecisionRule = DecisionRule()) -> list[dict[str, Any]]:
    """Verdict for each "lora:*" contender vs "base" and vs "rag" (when those contenders exist)."""
    names = table.names
    pos = {n: k for k, n in enumerate(names)}
    lookup = {(int(i), int(j)): r for r, (i, j) in enumerate(zip(table.i, table.j))}
    out = []
    for adapter in names:
        if not adapter.startswith(LORA_PREFIX):
            continue
        for other in ("base", "rag"):
            if other not in pos:
                continue
            ia, io = pos[adapter], pos[other]
            r = lookup.get((min(ia, io), max(ia, io)))
            if r is None:
                w = l = 0
                t = 0.0
            else:
                c = table.counts[r]
                w, l = (int(c[0]), int(c[1])) if ia < io else (int(c[1]), int(c[0]))
                t = float(c[2] + c[3])
            out.append({"adapter": adapter, "versus": other, **decide(w, l, t, rule)})
    return out


# --------------------------------------------------------------------------- #
# Length-controlled BT (style control)
# --------------------------------------------------------------------------- #
LENGTH_FEATURE = "(len_a - len_b) / (len_a + len_b)"


def length_controlled_bt(
    parsed: ParsedBattles, cfg: BTConfig = BTConfig()
) -> tuple[dict[str, Any] | None, str | None]:
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
    theta, hess = _logistic_newton(X, y[None], (1.0 - y)[None], cfg)
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
            "rating": _num(lc[c]),
            "rating_plain": _num(plain[c]),
            "rating_shift": _num(lc[c] - plain[c]),
            "rank": int(rank_lc[c]),
            "rank_plain": int(rank_plain[c]),
            "rank_change": int(rank_plain[c] - rank_lc[c]),  # > 0: moves up once length is controlled
        }
        for c in order
    ]
    moved = [
        {"name": r["name"], "from": r["rank_plain"], "to": r["rank"], "change": r["rank_change"]}
        for r in rows if r["rank_change"] != 0
    ]
    direction = "longer" if gamma > 0 else "shorter"
    return {
        "feature": LENGTH_FEATURE,
        "n_battles_used": int(n),
        "length_coef": _num(gamma),
        "length_coef_se": _num(se),
        "length_coef_z": _num(z),
        "length_coef_p": _num(2 * stats.norm.sf(abs(z))),
        "length_coef_rating_points": _num(gamma * SCALE),
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
# Score data (1-10 ratings, judge scores)
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class MannWhitneyResult:
    """U statistic of x, its p-value and two readable effect sizes."""

    u: float
    p_value: float
    alternative: str
    n_x: int
    n_y: int
    cles: float  # P(X > Y) + P(X = Y)/2 = U / (n_x n_y)
    rank_biserial: float  # 2*cles - 1, in [-1, 1]

    def to_dict(self) -> dict[str, Any]:
        return {k: (_num(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def mann_whitney(x: Sequence[float], y: Sequence[float], alternative: str = "two-sided") -> MannWhitneyResult:
    """Mann-Whitney U (rank-based, fine for ordinal 1-10 scores); alternative is about x vs y.

    "greater" tests whether x tends to be larger than y.  Uses scipy's exact/asymptotic
    choice (method="auto", tie- and continuity-corrected when asymptotic).
    """
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.size == 0 or y.size == 0:
        raise ValueError("mann_whitney needs at least one score in each group")
    res = stats.mannwhitneyu(x, y, alternative=alternative, method="auto")
    cles = float(res.statistic) / (x.size * y.size)
    return MannWhitneyResult(float(res.statistic), float(res.pvalue), alternative,
                             int(x.size), int(y.size), cles, 2 * cles - 1)


@dataclass(frozen=True)
class CohensDResult:
    """Standardised mean difference (x - y) / pooled SD with a normal-approximation CI."""

    d: float
    se: float
    ci_low: float
    ci_high: float
    hedges_g: float  # small-sample bias-corrected d
    n_x: int
    n_y: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (_num(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def cohens_d(x: Sequence[float], y: Sequence[float], alpha: float = 0.05) -> CohensDResult:
    """Cohen's d with pooled SD (ddof=1) and a Hedges-Olkin CI.

    SE(d) = sqrt((n_x + n_y)/(n_x n_y) + d^2 / (2 (n_x + n_y))) (Hedges & Olkin 1985,
    large-sample normal approximation); CI = d -/+ z_{1-alpha/2} SE.
    Hedges' g = d * (1 - 3/(4(n_x+n_y) - 9)).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    nx, ny = x.size, y.size
    if nx < 2 or ny < 2:
        raise ValueError("cohens_d needs at least two scores in each group")
    sp = math.sqrt(((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2))
    diff = float(x.mean() - y.mean())
    if sp == 0:
        d = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    else:
        d = diff / sp
    se = math.sqrt((nx + ny) / (nx * ny) + d * d / (2 * (nx + ny)))
    z = float(stats.norm.ppf(1 - alpha / 2))
    g = d * (1 - 3 / (4 * (nx + ny) - 9))
    return CohensDResult(d, se, d - z * se, d + z * se, g, nx, ny)


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


def compute_leaderboard(
    battles: Iterable[dict], n_boot: int = 200, seed: int = 0, min_votes: int = 10
) -> dict:
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
            "rating": _num(rating[m]),
            "ci_low": _num(ci_low[m]),
            "ci_high": _num(ci_high[m]),
            "rank": int(rank[m]),
            "rank_ub": int(rank_ub[m]) if rank_ub is not None else None,
            "votes": int(votes[m]),
            "wins": int(wins[m]),
            "losses": int(losses[m]),
            "ties": int(ties[m]),
            "both_bad": int(both_bad[m]),
            "win_rate": _num((wins[m] + ties[m] / 2) / votes[m]),
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
            "win_rate_a": _num((a_w[r] + t[r] / 2) / n[r]),
            "decisive_win_rate_a": _num(p_dec[r]),
            "wilson_low": _num(w_lo[r]),
            "wilson_high": _num(w_hi[r]),
            "p_value": _num(pval[r]),
            "p_holm": _num(p_holm[r]),
            "cohens_h": _num(h[r]),
            "more_votes_for_power": votes_for_power(_num(h[r]), int(dec[r])),
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
