"""Wires the arena core to the app: one vote store + battle manager per data dir, and the leaderboard view model."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

from arena.battles import ArenaConfig, BattleManager
from arena.store import VoteStore
from evaluation.significance import compute_leaderboard
from generation.display_names import friendly_name
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
        # ARENA_VOTES_PER_MINUTE: the per-visitor vote rate limit (browser tests set 1 to see a refused vote).
        per_minute = int(os.environ.get("ARENA_VOTES_PER_MINUTE", "") or ArenaConfig.votes_per_minute)
        ctx.extras["battles"] = BattleManager(store, contenders, generate,
                                              config=ArenaConfig(app_version=APP_VERSION, votes_per_minute=per_minute))
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


def verdicts_markdown(board: dict) -> str:
    vs = board.get("verdicts") or []
    if not vs:
        return "_No LoRA adapter has votes yet: train one in the Training tab and let it battle._"
    lines = ["| adapter | vs | verdict | improvement | Cohen's h | p | decisive votes |", "|---|---|---|---|---|---|---|"]
    for v in vs:
        imp = f"{v['improvement']:+.0%}" if v.get("improvement") is not None else "–"
        h = f"{v['effect_size']:.2f}" if v.get("effect_size") is not None else "–"
        p = f"{v['p_value']:.3g}" if v.get("p_value") is not None else "–"
        lines.append(f"| {inert(friendly_name(v['adapter']))} | {inert(friendly_name(v['versus']))} | **{v['verdict']}** | {imp} | {h} | {p} "
                     f"| {v.get('decisive', 0)} |")
    return "\n".join(lines)
