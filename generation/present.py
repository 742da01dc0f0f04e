"""Text shown around a generated reply (labels, speed line), kept out of ui.py so tests can check it directly."""
from __future__ import annotations

from .display_names import friendly_name
from .engine import GenerationResult


def variant_label(variant: str) -> str:
    """The friendly name (one home: display_names)."""
    return friendly_name(variant)


def stats_line(r: GenerationResult) -> str:
    """Latency, time to first token and decode speed; chars so users see the 280 limit at a glance."""
    return (f"{r.seconds:.2f} s total · first token {r.ttft:.2f} s · {r.new_tokens} tokens · "
            f"{r.tokens_per_s:.1f} tok/s · {len(r.reply)}/280 chars")
