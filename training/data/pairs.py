"""The record every curation step passes along: a (tweet, reply) ``Pair``, and ``Dropped`` (a pair plus why).

Its own module so importers, filters, dedup, the funnel, the review store and the export share one type
without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

__all__ = ["Pair", "PAIR_FIELDS", "Dropped", "engagement", "opt_str", "to_int", "to_bool"]


def opt_str(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def to_int(v: Any) -> int | None:
    if v is None or isinstance(v, bool):
        return None if v is None else int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    s = str(v).strip().replace(",", "").replace("_", "")
    if not s:
        return None
    try:
        return int(float(s))
    except ValueError:
        raise ValueError(f"expected an integer, got {v!r}") from None


_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n", "", "none", "null", "nan"}


def to_bool(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return bool(v)
    if isinstance(v, (list, dict)):
        return len(v) > 0
    s = str(v).strip().casefold()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise ValueError(f"expected a boolean, got {v!r}")


@dataclass(slots=True)
class Pair:
    """One training candidate, with the fields of assets/sample_pairs.jsonl.

    ``author_followers`` / ``time_diff_seconds`` are ``None`` when the export did not carry them; the
    filters then reject the pair (they cannot verify the rule) rather than guess.
    """

    pair_id: str
    tweet_id: str
    tweet: str
    reply: str
    likes: int = 0
    retweets: int = 0
    author_followers: int | None = None
    time_diff_seconds: int | None = None
    has_media: bool = False
    has_url: bool = False
    topic: str | None = None
    tone: str | None = None
    lang: str | None = None
    conversation_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Pair":
        """Build from a dict with our field names (unknown keys ignored)."""
        missing = [k for k in ("pair_id", "tweet_id", "tweet", "reply") if d.get(k) in (None, "")]
        if missing:
            raise ValueError(f"missing required field(s) {missing}")
        return cls(
            pair_id=str(d["pair_id"]),
            tweet_id=str(d["tweet_id"]),
            tweet=str(d["tweet"]),
            reply=str(d["reply"]),
            likes=to_int(d.get("likes")) or 0,
            retweets=to_int(d.get("retweets")) or 0,
            author_followers=to_int(d.get("author_followers")),
            time_diff_seconds=to_int(d.get("time_diff_seconds")),
            has_media=to_bool(d.get("has_media")),
            has_url=to_bool(d.get("has_url")),
            topic=opt_str(d.get("topic")),
            tone=opt_str(d.get("tone")),
            lang=opt_str(d.get("lang")),
            conversation_id=opt_str(d.get("conversation_id")),
        )


PAIR_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Pair))


@dataclass(slots=True)
class Dropped:
    """A rejected pair and why; ``detail`` holds the offending value or the kept duplicate's pair_id."""

    pair: Pair
    reason: str
    detail: str | None = None


def engagement(p: Pair) -> int:
    """Engagement score used to pick which duplicate to keep: likes + 2·retweets (a retweet is rarer and
    puts the reply in front of new people, so it counts double)."""
    return int(p.likes or 0) + 2 * int(p.retweets or 0)
