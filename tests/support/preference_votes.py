"""Synthetic Arena votes with a known preference (the warm reply wins), shared by the DPO and loop tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from arena.store import VoteRecord, VoteStore

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
TOPICS = [
    "coffee",
    "rain",
    "music",
    "code",
    "cats",
    "tea",
    "books",
    "running",
    "pizza",
    "trains",
    "chess",
    "gardens",
    "movies",
    "bikes",
    "snow",
    "jazz",
    "maps",
    "clouds",
    "soup",
    "birds",
    "lamps",
    "boats",
    "pens",
    "hats",
]
HELD_OUT = ["rivers", "cake", "games", "shoes", "stars", "bread"]


def good(t):
    return f"Love this take on {t}, so true and kind!"


def bad(t):
    return f"No. {t} is dull, stop posting."


def synthetic_votes(store: VoteStore, n_voters: int = 4) -> list[str]:
    """Every voter prefers the warm reply, on its own side of the screen half the time."""
    ids = []
    k = 0
    for v in range(n_voters):
        for t in TOPICS:
            warm_left = k % 2 == 0
            a, b = (good(t), bad(t)) if warm_left else (bad(t), good(t))
            rid = f"v{k}"
            store.add_vote(
                VoteRecord(
                    battle_id=rid,
                    tweet=f"My thoughts on {t} today",
                    contender_a="lora:sft-v1" if warm_left else "base",
                    contender_b="base" if warm_left else "lora:sft-v1",
                    reply_a=a,
                    reply_b=b,
                    vote="a" if warm_left else "b",
                    session_hash=f"s{v}",
                    client_hash=f"c{v}",
                    app_version="t",
                    created_at=(T0 + timedelta(minutes=k)).isoformat(),
                )
            )
            ids.append(rid)
            k += 1
    return ids
