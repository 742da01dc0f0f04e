"""Wires the arena core to the app: one vote store + battle manager per data dir, and the leaderboard view model."""
from __future__ import annotations

import json
import random
from pathlib import Path

from arena.battles import ArenaConfig, BattleManager
from arena.lineage import child_vs_parent, lineage_string, preference_runs
from arena.store import VoteStore
from evaluation.significance import compute_leaderboard
from security import inert


def arena_for(ctx) -> BattleManager:
    """Created once per app; contenders are re-read each battle so a newly trained adapter joins without a restart."""
    if "battles" not in ctx.extras:
        store = VoteStore(ctx.settings.data_dir)
        engine = ctx.engine

        def contenders() -> list[str]:
            return engine.variants() if engine is not None else []

        def generate(contender: str, tweet: str):
            r = engine.generate(tweet, contender)
            return r.reply, r.settings

        from context import APP_VERSION

        ctx.extras["votes"] = store
        ctx.extras["battles"] = BattleManager(store, contenders, generate, config=ArenaConfig(app_version=APP_VERSION))
    return ctx.extras["battles"]


def random_heldout_tweet(path: Path, rng: random.Random = random.SystemRandom()) -> str:
    with open(path, encoding="utf-8") as f:
        tweets = [json.loads(line)["tweet"] for line in f if line.strip()]
    return rng.choice(tweets)


def leaderboard(store: VoteStore, include_flagged: bool = False, n_boot: int = 200) -> dict:
    """Straight from the store on every view: no export step between a vote and the leaderboard."""
    board = compute_leaderboard(store.battles_for_leaderboard(include_excluded=include_flagged), n_boot=n_boot, seed=0)
    board["excluded"] = store.excluded_counts()
    board["total_votes"] = store.count(include_excluded=True)
    return board


def leaderboard_rows(board: dict) -> list[list]:
    rows = []
    for c in board.get("contenders", []):
        ci = f"{c['ci_low']:.0f} – {c['ci_high']:.0f}" if c.get("ci_low") is not None else "–"
        wr = f"{c['win_rate']:.1%}" if c.get("win_rate") is not None else "–"
        rows.append([c.get("rank"), c["name"], round(c["rating"], 1), ci, c.get("rank_ub"), c["votes"], wr])
    return rows


LEADERBOARD_COLUMNS = ["rank", "contender", "rating", "95% CI", "rank upper bound", "votes", "win rate"]


def verdicts_markdown(board: dict) -> str:
    vs = board.get("verdicts") or []
    if not vs:
        return "_No LoRA adapter has votes yet: train one in the Training tab and let it battle._"
    lines = ["| adapter | vs | verdict | improvement | Cohen's h | p | decisive votes |", "|---|---|---|---|---|---|---|"]
    for v in vs:
        imp = f"{v['improvement']:+.0%}" if v.get("improvement") is not None else "–"
        h = f"{v['effect_size']:.2f}" if v.get("effect_size") is not None else "–"
        p = f"{v['p_value']:.3g}" if v.get("p_value") is not None else "–"
        lines.append(f"| {v['adapter']} | {v['versus']} | **{v['verdict']}** | {imp} | {h} | {p} | {v.get('decisive', 0)} |")
    return "\n".join(lines)


def lineage_markdown(store: VoteStore, adapters_dir: Path) -> str:
    """Per adapter trained on votes: its lineage, and its verdict against its parent from votes cast after it was
    trained on tweets it never saw (arena.lineage.child_vs_parent enforces both)."""
    runs = preference_runs(adapters_dir)
    if not runs:
        return ""
    records = list(store.iter_votes(include_excluded=True))
    lines = ["", "#### Adapters trained on votes", "| lineage | vs parent (votes after training, unseen tweets) | verdict |", "|---|---|---|"]
    for name, lin in runs:
        try:
            hv = child_vs_parent(records, name, lin)
            verdict = f"**{hv.verdict['verdict']}**"
            used = (f"{hv.used} votes ({hv.dropped_before_training} before training and "
                    f"{hv.dropped_training_tweet} on training tweets left out)")
        except ValueError as exc:
            verdict, used = "–", inert(str(exc))
        lines.append(f"| {inert(lineage_string(adapters_dir, name))} | {used} | {verdict} |")
    return "\n".join(lines)
