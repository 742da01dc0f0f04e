"""Hypothesis tests and effect sizes shared by the Leaderboard, the Evaluate tab and the gates.

UI-free (numpy + scipy). Wilson interval, exact sign test, Holm adjustment, Cohen's h and the votes needed for 80 %
power (per-pair tests on decisive votes); Mann-Whitney U and Cohen's d (1-10 scores); and the one penalised
logistic solver that both the Bradley-Terry fit (evaluation.ratings) and the judge's length-controlled win rate
(evaluation.metrics) use.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
from scipy import special, stats

__all__ = [
    "LogisticConfig",
    "logistic_newton",
    "num",
    "wilson_ci",
    "sign_test",
    "holm",
    "cohens_h",
    "votes_for_power",
    "MannWhitneyResult",
    "mann_whitney",
    "CohensDResult",
    "cohens_d",
]


def num(x: Any) -> float | None:
    """Plain float for JSON; NaN/inf -> None."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class LogisticConfig:
    """Knobs of the one logistic solver (Bradley-Terry, length control, judge win rates).

    ``l2`` is the precision of the Gaussian prior on each beta (see module doc);
    ``max_step`` caps a Newton step (in log-odds) so separated data cannot overshoot.
    """

    l2: float = 1e-2
    tol: float = 1e-9
    max_iter: int = 100
    max_step: float = 4.0


def _neg_log_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, -x)


def logistic_newton(
    X: np.ndarray,
    succ: np.ndarray,
    fail: np.ndarray,
    cfg: LogisticConfig = LogisticConfig(),
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
        return {k: (num(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}


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
    return MannWhitneyResult(
        float(res.statistic), float(res.pvalue), alternative, int(x.size), int(y.size), cles, 2 * cles - 1
    )


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
        return {k: (num(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}


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
