"""The single formatter: reply-only labels, <|im_end|> trained, identical to the chat template's own rendering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from generation.chat import base_messages, render_prompt
from tests.support.tiny_qwen3 import build_tokenizer
from training.formatting import (
    IGNORE_INDEX,
    PadCollator,
    end_of_turn_token,
    format_example,
    format_examples,
    render_conversation,
    turn_end,
)

ROOT = Path(__file__).resolve().parents[3]
ROWS = [json.loads(line) for line in (ROOT / "assets" / "sample_pairs.jsonl").read_text().splitlines()[:40]]


@pytest.fixture(scope="module")
def qwen_tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def smol_tok():
    from transformers import AutoTokenizer

    from generation.embedded import ensure_converted

    return AutoTokenizer.from_pretrained(ensure_converted(ROOT / ".cache"))


def _trained(tok, ex) -> str:
    return tok.decode([i for i, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE_INDEX])


def _untrained_prefix(tok, ex) -> str:
    n = next(i for i, lab in enumerate(ex["labels"]) if lab != IGNORE_INDEX)
    return tok.decode(ex["input_ids"][:n])


def test_qwen3_labels_mask_prompt_and_empty_think_block(qwen_tok):
    tweet, reply = "Coffee before code?", "Code first, then coffee."
    ex = format_example(qwen_tok, tweet, reply, 512)
    prefix = _untrained_prefix(qwen_tok, ex)
    assert prefix.endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )  # the empty think block is context, not target
    assert prefix == render_prompt(qwen_tok, base_messages(tweet), thinking=False)
    assert _trained(qwen_tok, ex) == reply + "<|im_end|>"
    im_end = qwen_tok.convert_tokens_to_ids("<|im_end|>")
    trained_ids = [i for i, lab in zip(ex["input_ids"], ex["labels"]) if lab != IGNORE_INDEX]
    assert trained_ids[-1] == im_end and trained_ids.count(im_end) == 1
    think = [qwen_tok.convert_tokens_to_ids(t) for t in ("<think>", "</think>")]
    assert not any(i in think for i in trained_ids)
    # the "\n" after <|im_end|> is in the sequence but not trained
    assert ex["labels"][-1] == IGNORE_INDEX and qwen_tok.decode(ex["input_ids"][-1:]) == "\n"
    assert len(ex["input_ids"]) == len(ex["labels"]) == len(ex["attention_mask"]) and all(ex["attention_mask"])


def test_labels_equal_input_ids_where_trained(qwen_tok):
    ex = format_example(qwen_tok, "Hot sauce tier list, go.", "Heat or flavor? Two different lists.", 512)
    for i, lab in zip(ex["input_ids"], ex["labels"]):
        assert lab in (IGNORE_INDEX, i)


@pytest.mark.parametrize("which", ["qwen", "smol"])
def test_equals_full_chat_template_rendering(which, qwen_tok, smol_tok):
    tok = qwen_tok if which == "qwen" else smol_tok
    for row in ROWS:
        ex = format_example(tok, row["tweet"], row["reply"], 1024)
        full = render_conversation(tok, row["tweet"], row["reply"])
        assert tok.decode(ex["input_ids"]) == full
        assert ex["input_ids"] == tok(full, add_special_tokens=False)["input_ids"], row["pair_id"]
        assert _trained(tok, ex) == row["reply"] + "<|im_end|>"


def test_smollm2_turn_end_is_im_end(smol_tok):
    assert turn_end(smol_tok).trained == "<|im_end|>" and turn_end(smol_tok).trailing == "\n"
    assert end_of_turn_token(smol_tok) == "<|im_end|>"
    ex = format_example(smol_tok, "Tabs or spaces?", "Spaces, and the formatter settles it.", 512)
    assert _untrained_prefix(smol_tok, ex).endswith("<|im_start|>assistant\n")


def test_long_tweet_is_cut_not_the_reply(qwen_tok):
    reply = "Short reply that must survive intact."
    long_tweet = " ".join(["a long tweet about coffee and code"] * 40)
    full_len = len(format_example(qwen_tok, long_tweet, reply, 4096)["input_ids"])
    max_len = full_len - 60
    ex = format_example(qwen_tok, long_tweet, reply, max_len)
    assert ex is not None and len(ex["input_ids"]) <= max_len
    assert _trained(qwen_tok, ex) == reply + "<|im_end|>"
    prompt = _untrained_prefix(qwen_tok, ex)
    assert "a long tweet about coffee" in prompt and long_tweet not in prompt and prompt.endswith("</think>\n\n")


def test_reply_too_long_is_dropped_and_counted(qwen_tok):
    rows = [
        {"tweet": "hi", "reply": "word " * 300},
        {"tweet": "Coffee?", "reply": "Always coffee."},
        {"tweet": "", "reply": "x"},
    ]
    assert format_example(qwen_tok, rows[0]["tweet"], rows[0]["reply"], 200) is None
    examples, stats = format_examples(qwen_tok, rows, 200)
    assert len(examples) == 1 and stats.kept == 1 and stats.dropped_too_long == 1 and stats.dropped_empty == 1


def test_collator_pads_right_with_ignored_labels(qwen_tok):
    exs = [
        format_example(qwen_tok, "a", "short.", 512),
        format_example(qwen_tok, "a much longer tweet here", "a much longer reply too.", 512),
    ]
    pad = qwen_tok.pad_token_id
    batch = PadCollator(pad)(exs)
    n0 = len(exs[0]["input_ids"])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["input_ids"].dtype == torch.long
    assert batch["input_ids"][0, :n0].tolist() == exs[0]["input_ids"]  # right padding: content first
    assert (batch["input_ids"][0, n0:] == pad).all() and (batch["labels"][0, n0:] == IGNORE_INDEX).all()
    assert (batch["attention_mask"][0, n0:] == 0).all() and batch["attention_mask"][1].all()
    assert PadCollator(pad, pad_to_multiple_of=64)(exs)["input_ids"].shape[1] % 64 == 0


def test_template_that_breaks_prompt_plus_reply_is_refused(qwen_tok):
    import copy

    tok = copy.deepcopy(qwen_tok)
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['role'] == 'assistant' %}Answer: {% endif %}"
        "{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(ValueError, match="not match inference|differently"):
        format_example(tok, "t", "r", 512)
