"""The one place a (tweet, reply) pair becomes training tokens; the trainer and the data export both use it.

The prompt is rendered exactly as the app renders it at inference (generation.chat.render_prompt, thinking off, so a
Qwen3-style template ends with the empty `<think>\\n\\n</think>\\n\\n` block) and tokenized on its own, exactly as the
engine tokenizes it. Only the reply and the end-of-turn token are trained: a model that never learns to emit
<|im_end|> does not stop, and one trained on the prompt or the think block learns to echo it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from generation.chat import base_messages, render_prompt, supports_thinking
from generation.prompts import SYSTEM_PROMPT

IGNORE_INDEX = -100
_SENTINEL = "Sentinel reply text 12345."


@dataclass
class TurnEnd:
    """What the template writes after the reply: `trained` ends the turn (e.g. <|im_end|>), `trailing` (e.g. "\\n") is
    context only."""

    trained: str
    trailing: str


def _template_kwargs(tokenizer) -> dict:
    return {"enable_thinking": False} if supports_thinking(tokenizer) else {}


def render_conversation(tokenizer, tweet: str, reply: str, system_prompt: str = SYSTEM_PROMPT) -> str:
    """The full chat-template rendering of system + user + assistant reply (what the formatter must reproduce)."""
    msgs = base_messages(tweet, system_prompt) + [{"role": "assistant", "content": reply}]
    return tokenizer.apply_chat_template(msgs, tokenize=False, **_template_kwargs(tokenizer))


def turn_end(tokenizer, system_prompt: str = SYSTEM_PROMPT) -> TurnEnd:
    """Read the end-of-turn text off the template itself, so ChatML, Qwen3 and other templates all work.

    Raises ValueError when the template renders the assistant turn differently from "generation prompt + reply"
    (then training and inference would see different tokens).
    """
    msgs = base_messages("x", system_prompt)
    prompt = render_prompt(tokenizer, msgs, thinking=False)
    full = render_conversation(tokenizer, "x", _SENTINEL, system_prompt)
    head = prompt + _SENTINEL
    if not full.startswith(head):
        raise ValueError(
            "The chat template renders an assistant reply differently from its generation prompt followed by the "
            "reply; "
            "training would not match inference, so this template is not supported."
        )
    suffix = full[len(head) :]
    specials = sorted(
        {*getattr(tokenizer, "all_special_tokens", []), "<|im_end|>", "<|eot_id|>", "<|end|>"}, key=len, reverse=True
    )
    hits = [(suffix.find(s), s) for s in specials if s and s in suffix]
    if hits:
        pos, tok = min(hits)
        return TurnEnd(suffix[: pos + len(tok)], suffix[pos + len(tok) :])
    if tokenizer.eos_token:  # a template with no end-of-turn token: train the EOS so generation stops
        return TurnEnd(suffix + tokenizer.eos_token, "")
    raise ValueError(
        "The chat template has no end-of-turn token and the tokenizer has no EOS token; the model could not learn to "
        "stop."
    )


def end_of_turn_token(tokenizer) -> str:
    """The single token that ends an assistant turn (<|im_end|> for ChatML / Qwen3)."""
    trained = turn_end(tokenizer).trained
    for tok in sorted(getattr(tokenizer, "all_special_tokens", []) + ["<|im_end|>"], key=len, reverse=True):
        if trained.endswith(tok):
            return tok
    return tokenizer.eos_token


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def format_example(
    tokenizer, tweet: str, reply: str, max_len: int, system_prompt: str = SYSTEM_PROMPT, end: TurnEnd | None = None
) -> dict[str, list[int]] | None:
    """Tokens for one pair: prompt (labels -100) + reply + end-of-turn (trained) + trailing text (-100).

    Over-long examples lose tweet text, never reply text; None when the reply alone does not fit (the caller counts).
    Pass `end` (from turn_end) when formatting many examples to skip re-deriving it.
    """
    return _format(tokenizer, tweet, reply, max_len, system_prompt, end)[0]


def _format(
    tokenizer, tweet: str, reply: str, max_len: int, system_prompt: str, end: TurnEnd | None
) -> tuple[dict | None, bool]:
    end = end or turn_end(tokenizer, system_prompt)
    reply_ids = _ids(tokenizer, reply) + _ids(tokenizer, end.trained)
    tail_ids = _ids(tokenizer, end.trailing) if end.trailing else []

    def build(t: str) -> list[int]:
        return _ids(tokenizer, render_prompt(tokenizer, base_messages(t, system_prompt), thinking=False))

    prompt_ids = build(tweet)
    truncated = False
    if len(prompt_ids) + len(reply_ids) + len(tail_ids) > max_len:
        tail_ids = []  # the trailing newline is not trained; drop it before cutting anything real
    excess = len(prompt_ids) + len(reply_ids) - max_len
    if excess > 0:
        if len(build("")) + len(reply_ids) > max_len:
            return None, False
        truncated = True
        tweet_ids = _ids(tokenizer, tweet)
        keep = max(0, len(tweet_ids) - excess)
        while True:  # detokenizing can merge differently, so re-measure until it fits
            prompt_ids = build(tokenizer.decode(tweet_ids[:keep]).strip() if keep else "")
            over = len(prompt_ids) + len(reply_ids) - max_len
            if over <= 0 or keep == 0:
                break
            keep = max(0, keep - over)
    input_ids = prompt_ids + reply_ids + tail_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + reply_ids + [IGNORE_INDEX] * len(tail_ids)
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}, truncated


@dataclass
class FormatStats:
    kept: int = 0
    dropped_too_long: int = 0
    truncated_prompt: int = 0
    dropped_empty: int = 0
    reply_tokens: int = 0
    total_tokens: int = 0
    max_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def format_examples(
    tokenizer, rows: Iterable[dict], max_len: int, system_prompt: str = SYSTEM_PROMPT
) -> tuple[list[dict], FormatStats]:
    """Format many rows (each with tweet and reply); returns the examples and counts of what was dropped or cut."""
    end = turn_end(tokenizer, system_prompt)
    out: list[dict] = []
    st = FormatStats()
    for row in rows:
        tweet, reply = str(row.get("tweet") or "").strip(), str(row.get("reply") or "").strip()
        if not tweet or not reply:
            st.dropped_empty += 1
            continue
        ex, truncated = _format(tokenizer, tweet, reply, max_len, system_prompt, end)
        if ex is None:
            st.dropped_too_long += 1
            continue
        n_reply = sum(1 for x in ex["labels"] if x != IGNORE_INDEX)
        st.truncated_prompt += int(truncated)
        st.kept += 1
        st.reply_tokens += n_reply
        st.total_tokens += len(ex["input_ids"])
        st.max_tokens = max(st.max_tokens, len(ex["input_ids"]))
        out.append(ex)
    return out, st


class PadCollator:
    """Right-pads a batch; padded positions get attention 0 and label -100 so they never count."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = int(pad_token_id)
        self.multiple = pad_to_multiple_of

    def __call__(self, features: list[dict]) -> dict:
        import torch

        n = max(len(f["input_ids"]) for f in features)
        if self.multiple:
            n = -(-n // self.multiple) * self.multiple
        ids, mask, labels = [], [], []
        for f in features:
            pad = n - len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad_token_id] * pad)
            mask.append(list(f["attention_mask"]) + [0] * pad)
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * pad)
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
        }
