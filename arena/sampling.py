"""Active pair sampling: spend the next vote on the pair where it reduces the leaderboard's uncertainty most.

Score of a pair (i, j), from the current Bradley-Terry fit of all counted votes:

    p        = sigmoid(beta_i - beta_j)              the model's win probability; a vote is most informative at 1/2
    sd       = sqrt(Var(beta_i - beta_j))            Wald standard error from the fit's Hessian (its L2 prior keeps
                                                     unvoted pairs finite and very uncertain)
    overlap  = 2 * Phi(-|beta_i - beta_j| / sd)      1 when the two ratings' intervals coincide, -> 0 once they separate
    score    = p * (1 - p) * overlap

A floor keeps every pair in play: weight = floor / P + (1 - floor) * score / sum(score). Without the floor, a pair
that looks decided early (by chance) would never be re-checked.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from itertools import combinations
from typing import Iterable, Sequence

import numpy as np
from scipy import special, stats

from evaluation.ratings import BTConfig, PairTable, fit_bt

Pair = tuple[str, str]


@dataclass(frozen=True)
class SamplingConfig:
    floor: float = 0.2  # share of traffic spread evenly over all pairs, whatever the scores say
    bt: BTConfig = BTConfig()


def pair_key(x: str, y: str) -> Pair:
    return (x, y) if x <= y else (y, x)


def _table(names: list[str], tallies: dict[Pair, list[float]]) -> PairTable:
    pos = {n: k for k, n in enumerate(names)}
    rows = [(pos[x], pos[y], t) for (x, y), t in tallies.items() if x in pos and y in pos and sum(t) > 0]
    if not rows:
        z = np.zeros(0, dtype=np.int64)
        return PairTable(names, z, z, np.zeros((0, 4)))
    i = np.array([r[0] for r in rows], dtype=np.int64)
    j = np.array([r[1] for r in rows], dtype=np.int64)
    counts = np.array([[t[0], t[1], t[2], 0.0] for _, _, t in rows], dtype=float)
    return PairTable(names, i, j, counts)


def bt_with_cov(
    names: Sequence[str], tallies: dict[Pair, list[float]], cfg: BTConfig = BTConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """(beta, covariance) of the penalised BT fit; tallies[(x, y) with x < y] = [wins_x, wins_y, ties]."""
    names = sorted(names)
    k = len(names)
    table = _table(names, tallies)
    beta = fit_bt(table, cfg) if table.i.size else np.zeros(k)
    h = cfg.l2 * np.eye(k)
    for i, j, c in zip(table.i, table.j, table.counts):
        n = float(c.sum())
        p = special.expit(beta[i] - beta[j])
        w = n * p * (1 - p)
        h[i, i] += w
        h[j, j] += w
        h[i, j] -= w
        h[j, i] -= w
    return beta, np.linalg.inv(h)


def pair_scores(
    names: Sequence[str], tallies: dict[Pair, list[float]], cfg: SamplingConfig = SamplingConfig()
) -> dict[Pair, float]:
    """Uncertainty score per unordered pair (see module doc)."""
    names = sorted(set(names))
    beta, cov = bt_with_cov(names, tallies, cfg.bt)
    out: dict[Pair, float] = {}
    for i, j in combinations(range(len(names)), 2):
        d = beta[i] - beta[j]
        sd = math.sqrt(max(cov[i, i] + cov[j, j] - 2 * cov[i, j], 1e-12))
        p = float(special.expit(d))
        out[(names[i], names[j])] = p * (1 - p) * 2 * float(stats.norm.sf(abs(d) / sd))
    return out


def active_weights(
    names: Sequence[str], tallies: dict[Pair, list[float]], cfg: SamplingConfig = SamplingConfig()
) -> dict[Pair, float]:
    """Sampling probability per unordered pair, summing to 1, each at least floor / P."""
    scores = pair_scores(names, tallies, cfg)
    if not scores:
        return {}
    total = sum(scores.values())
    n = len(scores)
    if total <= 0:
        return {p: 1.0 / n for p in scores}
    return {p: cfg.floor / n + (1 - cfg.floor) * s / total for p, s in scores.items()}


def pairs_decided(
    names: Sequence[str], tallies: dict[Pair, list[float]], z: float = 1.96, cfg: BTConfig = BTConfig()
) -> bool:
    """True when every pair's rating difference is significant (|diff| > z * sd): the full order is decided."""
    names = sorted(set(names))
    beta, cov = bt_with_cov(names, tallies, cfg)
    for i, j in combinations(range(len(names)), 2):
        sd = math.sqrt(max(cov[i, i] + cov[j, j] - 2 * cov[i, j], 1e-12))
        if abs(beta[i] - beta[j]) <= z * sd:
            return False
    return True


class PairTallies:
    """Outcome counts per pair, kept current as votes arrive; thread-safe (the Arena's workers share one)."""

    def __init__(self, battles: Iterable[dict] = ()):
        self._lock = threading.Lock()
        self._t: dict[Pair, list[float]] = {}
        for b in battles:
            self.record(b["model_a"], b["model_b"], b["winner"])

    def record(self, a: str, b: str, winner: str) -> None:
        """winner in Chatbot Arena terms: model_a, model_b, tie, tie (bothbad)."""
        key = pair_key(a, b)
        with self._lock:
            t = self._t.setdefault(key, [0.0, 0.0, 0.0])
            if winner == "model_a":
                t[0 if key[0] == a else 1] += 1
            elif winner == "model_b":
                t[0 if key[0] == b else 1] += 1
            else:
                t[2] += 1

    def snapshot(self) -> dict[Pair, list[float]]:
        with self._lock:
            return {k: list(v) for k, v in self._t.items()}
