"""Chat templating with Qwen3's thinking switch, and turning raw model text into a publishable reply."""

from __future__ import annotations

import re

from common.text import TWEET_LIMIT

from .prompts import SYSTEM_PROMPT, user_message

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_SPECIAL = re.compile(r"<\|[^|<>]{1,40}\|>")
_QUOTES = {('"', '"'), ("“", "”"), ("'", "'")}


def supports_thinking(tokenizer) -> bool:
    """Qwen3-style templates read an `enable_thinking` variable; others have no thinking mode."""
    template = getattr(tokenizer, "chat_template", None) or ""
    return "enable_thinking" in template


def base_messages(tweet: str, system_prompt: str = SYSTEM_PROMPT) -> list[dict]:
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user_message(tweet)}]


def render_prompt(tokenizer, messages: list[dict], thinking: bool = False) -> str:
    """Render the generation prompt. `thinking` only has an effect on templates that support it."""
    kwargs = {"enable_thinking": thinking} if supports_thinking(tokenizer) else {}
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)


def end_of_turn_ids(tokenizer) -> list[int]:
    """Token ids that end the assistant turn: <|im_end|> (ChatML / Qwen3) and the tokenizer's EOS."""
    ids = []
    for tok in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid != getattr(tokenizer, "unk_token_id", None) and tid >= 0:
            ids.append(tid)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))


def split_thinking(text: str) -> tuple[str, str]:
    """Split generated text into (thinking, answer).

    Handles a complete block, a block still open while streaming (everything is thinking so far), and a close tag
    without an open tag (templates that put <think> in the prompt).
    """
    if THINK_OPEN in text:
        before, _, rest = text.partition(THINK_OPEN)
        if THINK_CLOSE in rest:
            thinking, _, after = rest.partition(THINK_CLOSE)
            return thinking.strip(), (before + after)
        return rest.strip(), before
    if THINK_CLOSE in text:
        thinking, _, after = text.partition(THINK_CLOSE)
        return thinking.strip(), after
    return "", text


def truncate_words(text: str, limit: int = TWEET_LIMIT) -> str:
    """Cut to `limit` characters at a word boundary (a hard cut only for one giant word)."""
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space > limit // 2 else text[:limit]
    return cut.rstrip(" ,;:-–—")


def clean_reply(text: str, limit: int = TWEET_LIMIT) -> str:
    """Answer part only, no special tokens or think tags, no wrapping quotes, at most `limit` characters."""
    _, answer = split_thinking(text)
    for marker in ("<|im_end|>", "<|im_start|>"):  # anything after the end of the turn is not the reply
        answer = answer.split(marker)[0]
    answer = _SPECIAL.sub("", answer).replace(THINK_OPEN, "").replace(THINK_CLOSE, "")
    answer = answer.strip()
    if re.match(r"(?i)^reply\s*:\s*", answer):
        answer = re.sub(r"(?i)^reply\s*:\s*", "", answer)
    if len(answer) >= 2 and (answer[0], answer[-1]) in _QUOTES and answer.count(answer[0]) == 2:
        answer = answer[1:-1].strip()
    return truncate_words(answer, limit)
