"""Leaderboard figures (matplotlib, UI-free): ratings with CI error bars, and the pairwise win-rate heatmap."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from generation.variants import friendly_name  # noqa: E402


def rating_ci_figure(board: dict):
    rows = board.get("contenders") or []
    fig, ax = plt.subplots(figsize=(6.5, 0.6 + 0.45 * max(1, len(rows))))
    if not rows:
        ax.text(0.5, 0.5, "No votes yet", ha="center", va="center", transform=ax.transAxes)
        ax.axis("off")
        return fig
    rows = rows[::-1]  # best on top
    y = np.arange(len(rows))
    r = np.array([c["rating"] for c in rows], dtype=float)
    lo = np.array([c["ci_low"] if c["ci_low"] is not None else c["rating"] for c in rows], dtype=float)
    hi = np.array([c["ci_high"] if c["ci_high"] is not None else c["rating"] for c in rows], dtype=float)
    ax.errorbar(r, y, xerr=[np.clip(r - lo, 0, None), np.clip(hi - r, 0, None)], fmt="o", capsize=4, color="#2563eb")
    ax.set_yticks(y, [friendly_name(c["name"]) for c in rows])
    ax.axvline(1000, color="#9ca3af", lw=0.8, ls="--")
    ax.set_xlabel("rating (Elo scale) with bootstrap 95% CI")
    fig.tight_layout()
    return fig


def winrate_heatmap(board: dict):
    names = [c["name"] for c in board.get("contenders") or []]
    fig, ax = plt.subplots(figsize=(1.6 + 0.9 * max(1, len(names)), 1.2 + 0.8 * max(1, len(names))))
    if len(names) < 2:
        ax.text(0.5, 0.5, "Needs votes on at least one pair", ha="center", va="center", transform=ax.transAxes)
        ax.axis("off")
        return fig
    idx = {n: i for i, n in enumerate(names)}
    m = np.full((len(names), len(names)), np.nan)
    for p in board.get("pairs") or []:
        if p["a"] in idx and p["b"] in idx and p.get("win_rate_a") is not None:
            m[idx[p["a"]], idx[p["b"]]] = p["win_rate_a"]
            m[idx[p["b"]], idx[p["a"]]] = 1 - p["win_rate_a"]
    im = ax.imshow(m, cmap="RdBu", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), [friendly_name(n) for n in names], rotation=30, ha="right")
    ax.set_yticks(range(len(names)), [friendly_name(n) for n in names])
    for i in range(len(names)):
        for j in range(len(names)):
            if not np.isnan(m[i, j]):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=9)
    ax.set_title("row beats column (ties count half)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
