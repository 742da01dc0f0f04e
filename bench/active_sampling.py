"""Simulation: votes until the leaderboard reaches the right decision, active pair sampling vs uniform pairs.

Four contenders with known Bradley-Terry strengths (base < rag < lora:v1 < lora:v2). Each vote: the sampler picks a pair
(arena/sampling.py active weights, refreshed every `--every` votes as the Arena would see them, or uniform), the outcome
is
drawn from the true model (10 % ties). Every `--every` votes the run checks whether the full order is decided (every
pair's
rating difference beyond 1.96 standard errors, arena.sampling.pairs_decided); the votes used then, and whether that
order is
the true one, are recorded. Median over `--runs` runs per arm; both arms see the same random streams.

    .venv/bin/python bench/active_sampling.py [--runs 200] [--max-votes 6000]

Writes bench/results/active-sampling-cpu-<date>.json and docs/active_sampling.png (the README's curve).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import sys
import time
from itertools import combinations
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from arena.sampling import SamplingConfig, active_weights, bt_with_cov, pair_key, pairs_decided  # noqa: E402

NAMES = ["base", "lora:v1", "lora:v2", "rag"]  # sorted, as the sampler keys them
TRUE_RATING = {"base": 1000.0, "rag": 1050.0, "lora:v1": 1100.0, "lora:v2": 1175.0}
TIE_RATE = 0.1


def true_order() -> list[str]:
    return sorted(NAMES, key=lambda n: -TRUE_RATING[n])


def simulate(mode: str, seed: int, max_votes: int, every: int, floor: float) -> tuple[int, bool, bool]:
    """(votes used, decided, decided order is correct) for one run."""
    rng = np.random.default_rng(seed)
    beta = {n: (TRUE_RATING[n] - 1000.0) * math.log(10) / 400 for n in NAMES}
    pairs = list(combinations(NAMES, 2))
    tallies: dict = {}
    cfg = SamplingConfig(floor=floor)
    probs = np.full(len(pairs), 1 / len(pairs))
    for v in range(1, max_votes + 1):
        x, y = pairs[rng.choice(len(pairs), p=probs)]
        t = tallies.setdefault(pair_key(x, y), [0.0, 0.0, 0.0])
        u = rng.random()
        if u < TIE_RATE:
            t[2] += 1
        else:
            p_x = 1 / (1 + math.exp(-(beta[x] - beta[y])))
            t[0 if rng.random() < p_x else 1] += 1  # x < y: index 0 is x
        if v % every == 0:
            if pairs_decided(NAMES, tallies, cfg=cfg.bt):
                fit = _order(tallies)
                return v, True, fit == true_order()
            if mode == "active":
                w = active_weights(NAMES, tallies, cfg)
                probs = np.array([w[p] for p in pairs])
                probs /= probs.sum()
    return max_votes, False, False


def _order(tallies: dict) -> list[str]:
    beta, _ = bt_with_cov(NAMES, tallies)
    return [NAMES[i] for i in np.argsort(-beta)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--max-votes", type=int, default=6000)
    ap.add_argument("--every", type=int, default=10, help="votes between decision checks / weight refreshes")
    ap.add_argument("--floor", type=float, default=SamplingConfig.floor)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--plot", default=str(ROOT / "docs" / "active_sampling.png"))
    ns = ap.parse_args(argv)
    t0 = time.time()
    res: dict = {}
    for mode in ("uniform", "active"):
        runs = [simulate(mode, 1000 + s, ns.max_votes, ns.every, ns.floor) for s in range(ns.runs)]
        votes = np.array([r[0] for r in runs])
        decided = np.array([r[1] for r in runs])
        correct = np.array([r[2] for r in runs])
        res[mode] = {
            "median_votes": float(np.median(votes)),
            "p25": float(np.percentile(votes, 25)),
            "p75": float(np.percentile(votes, 75)),
            "decided_rate": float(decided.mean()),
            "correct_rate": float(correct.mean()),
            "votes": votes.tolist(),
            "correct": correct.tolist(),
        }
        print(
            f"{mode:8s} median {res[mode]['median_votes']:.0f} votes (IQR "
            f"{res[mode]['p25']:.0f}-{res[mode]['p75']:.0f}), "
            f"decided {decided.mean():.0%}, correct {correct.mean():.0%}",
            flush=True,
        )
    ratio = res["active"]["median_votes"] / res["uniform"]["median_votes"]
    out = {
        "bench": "active_sampling",
        "device": f"cpu ({platform.machine()}, dev VM)",
        "date": dt.date.today().isoformat(),
        "runs": ns.runs,
        "max_votes": ns.max_votes,
        "check_every": ns.every,
        "floor": ns.floor,
        "tie_rate": TIE_RATE,
        "true_rating": TRUE_RATING,
        "decision": "every pair's BT difference beyond 1.96 Wald SEs; correct = the true order",
        "active_over_uniform_median_votes": round(ratio, 3),
        "wall_s": round(time.time() - t0, 1),
        **res,
    }
    Path(ns.out).mkdir(parents=True, exist_ok=True)
    path = Path(ns.out) / f"active-sampling-cpu-{out['date']}.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"active / uniform median votes = {ratio:.2f}; wrote {path}")
    _plot(res, ns.max_votes, Path(ns.plot))
    return 0


def _plot(res: dict, max_votes: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, max_votes, 300)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for mode, color in (("uniform", "#9ca3af"), ("active", "#2563eb")):
        v = np.array(res[mode]["votes"])
        c = np.array(res[mode]["correct"], dtype=bool)
        frac = [(c & (v <= g)).mean() for g in grid]
        ax.plot(grid, frac, color=color, label=f"{mode} (median {res[mode]['median_votes']:.0f} votes)")
    ax.set_xlabel("votes cast")
    ax.set_ylabel("share of runs with the right order decided")
    ax.set_title("4 contenders, known strengths: active vs uniform pair sampling")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
