"""Seeded train/eval split grouped by parent tweet: the project's only split rule (the export and the trainer use it).

Why grouped: replies to the same tweet on both sides leak the prompt into eval and inflate the score
(assets/README.md, "Grouped tweets"). The group is ``conversation_id`` when the export has one (replies
deeper in a thread share context) and ``tweet_id`` otherwise. Groups are sorted before the seeded
shuffle, so the split depends only on the data and the seed, not on the input order.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Mapping, Sequence, TypeVar

from .pairs import Pair

__all__ = ["group_key", "row_group_key", "split_pairs"]

T = TypeVar("T")


def group_key(p: Pair) -> str:
    return p.conversation_id or p.tweet_id


def row_group_key(row: Mapping[str, Any]) -> str:
    """``group_key`` for a plain row (an export or a user's JSONL); the tweet text stands in when it has no ids."""
    return str(row.get("conversation_id") or row.get("tweet_id") or row.get("tweet") or "")


def split_pairs(
    pairs: Sequence[T],
    eval_fraction: float = 0.1,
    seed: int = 42,
    key: Callable[[T], str] = group_key,  # type: ignore[assignment]
) -> tuple[list[T], list[T]]:
    """(train, eval): whole groups go to eval, in seeded order, until it holds ≥ eval_fraction of the rows.

    With two or more groups both sides are non-empty; with one group everything is train.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(str(key(p)), []).append(i)
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    target = round(eval_fraction * len(pairs))
    if eval_fraction > 0 and len(names) >= 2:
        target = max(target, 1)
    eval_groups: set[str] = set()
    n_eval = 0
    for g in names:
        if n_eval >= target or len(eval_groups) >= len(names) - 1:  # always leave train at least one group
            break
        eval_groups.add(g)
        n_eval += len(groups[g])
    train = [p for p in pairs if str(key(p)) not in eval_groups]
    evl = [p for p in pairs if str(key(p)) in eval_groups]
    return train, evl
