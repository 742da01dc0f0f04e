"""The names of the variants every tab shows and every store records: "base", "rag" and "lora:<adapter>".

One home for the prefix, so nothing slices "lora:" by hand.
"""
from __future__ import annotations

BASE = "base"
RAG = "rag"
LORA_PREFIX = "lora:"

LABELS = {BASE: "Base model", RAG: "RAG few-shot (k=3)"}

__all__ = ["BASE", "RAG", "LORA_PREFIX", "LABELS", "is_lora", "adapter_name", "lora_variant", "display_name"]


def is_lora(variant: str) -> bool:
    return variant.startswith(LORA_PREFIX)


def adapter_name(variant: str) -> str | None:
    """"lora:tone" -> "tone"; None for base, rag or anything that is not a LoRA variant."""
    return variant[len(LORA_PREFIX):] if variant.startswith(LORA_PREFIX) else None


def lora_variant(name: str) -> str:
    """An adapter name (bare or already prefixed) as its variant name: "tone" -> "lora:tone"."""
    return name if name.startswith(LORA_PREFIX) else LORA_PREFIX + name


def display_name(variant: str) -> str:
    """The friendly label shown above a reply: "Base model", "RAG few-shot (k=3)", "LoRA: tone"."""
    name = adapter_name(variant)
    if name is not None:
        return f"LoRA: {name}"
    return LABELS.get(variant, variant)
