"""Text shown around a generated reply (labels, speed line), kept out of ui.py so tests can check it directly."""
from __future__ import annotations

from .engine import BASE, LORA_PREFIX, RAG, GenerationResult

LABELS = {BASE: "Base model", RAG: "RAG few-shot (k=3)"}


def variant_label(variant: str) -> str:
    if variant.startswith(LORA_PREFIX):
        return f"LoRA: {variant[len(LORA_PREFIX):]}"
    return LABELS.get(variant, variant)


def stats_line(r: GenerationResult) -> str:
    """Latency, time to first token and decode speed; chars so users see the 280 limit at a glance."""
    return (f"{r.seconds:.2f} s total · first token {r.ttft:.2f} s · {r.new_tokens} tokens · "
            f"{r.tokens_per_s:.1f} tok/s · {len(r.reply)}/280 chars")
