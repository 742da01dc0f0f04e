"""Benchmark compute_leaderboard: 100k synthetic votes over 5 contenders, 200 bootstrap resamples.

Target: <= 2 s on the 2-core dev box.  Votes come from a known Bradley-Terry model (plus
10 % ties, 3 % both-bad and a mild length effect) so the run also reports how far the
fitted ratings are from the truth.  Prints a human line and one JSON line, and writes
bench/results/leaderboard-cpu-<date>.json.

    .venv/bin/python bench/leaderboard.py [--votes 100000] [--boot 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evaluation.ratings import compute_leaderboard  # noqa: E402

CONTENDERS = ["base", "rag", "lora:tone", "lora:short", "lora:full"]
TRUE_RATING = np.array([1000.0, 1040.0, 1075.0, 985.0, 1110.0])  # known strengths
MEAN_LEN = np.array([180.0, 220.0, 200.0, 120.0, 260.0])  # reply length in chars
LENGTH_GAMMA = 0.5  # true length effect on the log-odds


def make_votes(n: int, seed: int) -> list[dict]:
    """Arena-format battle dicts drawn from the known model (not timed)."""
    rng = np.random.default_rng(seed)
    k = len(CONTENDERS)
    beta = (TRUE_RATING - TRUE_RATING.mean()) * math.log(10) / 400
    a = rng.integers(0, k, n)
    b = (a + rng.integers(1, k, n)) % k
    la = np.round(MEAN_LEN[a] * rng.lognormal(0, 0.35, n)).astype(int) + 1
    lb = np.round(MEAN_LEN[b] * rng.lognormal(0, 0.35, n)).astype(int) + 1
    logit = beta[a] - beta[b] + LENGTH_GAMMA * (la - lb) / (la + lb)
    winner = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "model_a", "model_b")
    u = rng.random(n)
    winner = np.where(u < 0.10, "tie", np.where(u < 0.13, "tie (bothbad)", winner))
    names = np.array(CONTENDERS)
    return [
        {"model_a": ma, "model_b": mb, "winner": w, "len_a": x, "len_b": y}
        for ma, mb, w, x, y in zip(names[a].tolist(), names[b].tolist(), winner.tolist(), la.tolist(), lb.tolist())
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--votes", type=int, default=100_000)
    ap.add_argument("--boot", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()

    t0 = time.perf_counter()
    votes = make_votes(args.votes, args.seed)
    gen_s = time.perf_counter() - t0

    times, result = [], None
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        result = compute_leaderboard(votes, n_boot=args.boot, seed=args.seed)
        times.append(time.perf_counter() - t0)

    true_centred = dict(zip(CONTENDERS, TRUE_RATING - TRUE_RATING.mean() + 1000))
    lc = result["length_control"] or {}
    lc_err = max((abs(r["rating"] - true_centred[r["name"]]) for r in lc.get("contenders", [])), default=None)
    record = {
        "bench": "leaderboard",
        "date": dt.date.today().isoformat(),
        "n_votes": args.votes,
        "n_contenders": len(CONTENDERS),
        "n_boot": args.boot,
        "seconds_first": round(times[0], 4),
        "seconds_median": round(float(np.median(times)), 4),
        "seconds_all": [round(t, 4) for t in times],
        "target_seconds": 2.0,
        "within_target": times[0] <= 2.0,
        "generate_seconds": round(gen_s, 3),
        "max_abs_rating_error_plain": round(
            max(abs(c["rating"] - true_centred[c["name"]]) for c in result["contenders"]), 2
        ),
        "max_abs_rating_error_length_controlled": None if lc_err is None else round(lc_err, 2),
        "length_coef": lc.get("length_coef"),
        "true_length_coef": LENGTH_GAMMA,
        "ranking": [c["name"] for c in result["contenders"]],
        "machine": {
            "processor": platform.processor(),
            "machine": platform.machine(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
    }
    print(
        f"compute_leaderboard: {args.votes:,} votes, {len(CONTENDERS)} contenders, {args.boot} bootstrap "
        f"resamples: first {times[0]:.3f} s, median {np.median(times):.3f} s "
        f"(target <= 2 s, {'OK' if record['within_target'] else 'SLOW'})"
    )
    print(json.dumps(record))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"leaderboard-cpu-{record['date']}.json"
    path.write_text(json.dumps({**record, "leaderboard": result}, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


if __name__ == "__main__":
    main()
