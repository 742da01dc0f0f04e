"""The Generate form's small rules, UI-free so they are unit-tested: the seed field and the live character counter."""

from __future__ import annotations

from common.text import TWEET_LIMIT


def parse_seed(raw: str | float | int | None) -> int | None:
    """Empty means random (None). A whole number is a fixed seed; anything else is refused with one sentence."""
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"The seed must be a whole number or empty (random); got {text[:20]!r}.") from None
    if not value.is_integer() or not 0 <= value < 2**32:
        raise ValueError(
            f"The seed must be a whole number from 0 to {2**32 - 1}, or empty for random; got {text[:20]!r}."
        )
    return int(value)


def char_counter(text: str | None, limit: int = TWEET_LIMIT) -> str:
    """ "n/280" as validate_tweet counts (stripped length), with how much to cut once over."""
    n = len((text or "").strip())
    return f"{n}/{limit} characters" + (f" — {n - limit} too many" if n > limit else "")
