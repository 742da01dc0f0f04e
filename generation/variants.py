"""The names of the variants every tab shows and every store records: "base", "rag" and "lora:<adapter>".

One home for the prefix, so nothing slices "lora:" by hand.
"""

from __future__ import annotations

BASE = "base"
RAG = "rag"
LORA_PREFIX = "lora:"

FRIENDLY = {BASE: "Base", RAG: "RAG few-shot"}  # wherever a visitor reads a contender (Generate, Arena, Leaderboard)

__all__ = ["BASE", "RAG", "LORA_PREFIX", "FRIENDLY", "is_lora", "adapter_name", "lora_variant", "friendly_name"]


def is_lora(variant: str) -> bool:
    return variant.startswith(LORA_PREFIX)


def adapter_name(variant: str) -> str | None:
    """ "lora:tone" -> "tone"; None for base, rag or anything that is not a LoRA variant."""
    return variant[len(LORA_PREFIX) :] if variant.startswith(LORA_PREFIX) else None


def lora_variant(name: str) -> str:
    """An adapter name (bare or already prefixed) as its variant name: "tone" -> "lora:tone"."""
    return name if name.startswith(LORA_PREFIX) else LORA_PREFIX + name


def friendly_name(variant: str) -> str:
    """What a visitor reads for a contender id: "Base", "RAG few-shot", "LoRA: name"; unknown ids as they are."""
    name = adapter_name(variant)
    return f"LoRA: {name}" if name is not None else FRIENDLY.get(variant, variant)
