"""Prompt text shared by every variant, so base / RAG / LoRA differ only in what they are meant to differ in."""
from __future__ import annotations

SYSTEM_PROMPT = (
    "You write replies to tweets on X (Twitter). Write one reply: concise (under 280 characters), "
    "specific to the tweet, natural and engaging. No hashtags unless they add something. Output only the reply text."
)


def user_message(tweet: str) -> str:
    """The tweet is fenced in triple quotes so its text cannot pose as instructions."""
    return f'Tweet:\n"""\n{tweet}\n"""\n\nWrite a reply.'
