"""What a visitor reads for a contender id: "Base", "RAG few-shot", "LoRA: name" (never "base", "rag", "lora:x").

One home for the friendly names so Generate, the Arena reveal, the Leaderboard and the Evaluate report agree.
Pure string code: no model import, so the statistics and report modules can use it too.
"""
from __future__ import annotations

BASE_ID, RAG_ID, LORA_ID_PREFIX = "base", "rag", "lora:"  # the stored ids (same values as generation.engine)
FRIENDLY = {BASE_ID: "Base", RAG_ID: "RAG few-shot"}


def friendly_name(contender: str) -> str:
    """Display name of a stored contender id; unknown ids are shown as they are."""
    if contender.startswith(LORA_ID_PREFIX):
        return f"LoRA: {contender[len(LORA_ID_PREFIX):]}"
    return FRIENDLY.get(contender, contender)
