"""Text shown around a generated reply (labels, speed line, RAG examples), kept out of ui.py so tests can check it."""

from __future__ import annotations

from typing import Sequence

from common.text import TWEET_LIMIT
from security.escape import inert_line

from .engine import GenerationResult
from .prompts import likes_text

__all__ = ["stats_line", "format_examples_markdown"]


def stats_line(r: GenerationResult) -> str:
    """Latency, time to first token and decode speed; chars so users see the 280 limit at a glance."""
    return (
        f"{r.seconds:.2f} s total · first token {r.ttft:.2f} s · {r.new_tokens} tokens · "
        f"{r.tokens_per_s:.1f} tok/s · {len(r.reply)}/{TWEET_LIMIT} chars"
    )


def _inline(text: str) -> str:
    return "<br>".join(inert_line(line) for line in text.strip().splitlines())


def format_examples_markdown(examples: Sequence) -> str:
    """Retrieved examples for the UI panel; all tweet/reply text is escaped so it renders inert."""
    if not examples:
        return "_No similar high-engagement examples found._"
    parts = []
    for i, ex in enumerate(examples, 1):
        parts.append(
            f"**Example {i}** · {likes_text(ex.likes)} · similarity {ex.score:.2f}\n\n"
            f"> **Tweet:** {_inline(ex.tweet)}\n>\n"
            f"> **Reply:** {_inline(ex.reply)}"
        )
    return "\n\n".join(parts)
