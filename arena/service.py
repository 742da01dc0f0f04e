"""Wires the arena core to the app: one vote store + battle manager per data dir, and the leaderboard view model."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

from arena.battles import ArenaConfig, BattleManager
from arena.pool import BattlePool
from arena.store import VoteStore
from evaluation.significance import compute_leaderboard


def pool_enabled(engine) -> bool:
    """ARENA_POOL=auto (default): on when the model runs on a GPU (filling 72 tweets x every contender is minutes of
    CPU on a 2-core Space); 1 / 0 force it on / off."""
    v = os.environ.get("ARENA_POOL", "auto").strip().lower()
    if v in ("1", "true", "on", "yes"):
        return True
    if v in ("0", "false", "off", "no"):
        return False
    return getattr(engine.loaded, "device", "cpu").startswith("cuda")


def arena_for(ctx) -> BattleManager:
    """Created once per app; contenders are re-read each battle so a newly trained adapter joins without a restart."""
    if "battles" not in ctx.extras:
        store = VoteStore(ctx.settings.data_dir)
        engine = ctx.engine

        def contenders() -> list[str]:
            return engine.variants() if engine is not None else []

        def generate(contender: str, tweet: str):
            last = None
            for last in engine.stream_many(tweet, [contender], private=True):
                pass
            r = last[0].result
            return r.reply, r.settings

        def stream(pair, tweet: str):
            """Both replies in one batch, each with its own OS-seeded generator (a public seed cannot reproduce them)."""
            for evs in engine.stream_many(tweet, list(pair), private=True):
                yield [(e.reply, e.result.settings if e.done else None, e.queued) for e in evs]

        from context import APP_VERSION

        ctx.extras["votes"] = store
        if engine is not None and pool_enabled(engine):
            pool = BattlePool(engine, ctx.settings.heldout, Path(ctx.settings.data_dir) / "battle_pool", contenders)
            pool.refresh()  # background rows on the scheduler; visitors always go first
            ctx.extras["battle_pool"] = pool
        ctx.extras["battles"] = BattleManager(store, contenders, generate, config=ArenaConfig(app_version=APP_VERSION),
                                                stream_fn=stream)
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
