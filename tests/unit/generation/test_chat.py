"""Reply clean-up and thinking split: pure functions, checked on hand-written cases."""

import pytest

from common.text import validate_tweet
from generation.chat import clean_reply, split_thinking, truncate_words


def test_split_complete_think_block():
    assert split_thinking("<think>\nplan it\n</think>\n\nHello!") == ("plan it", "\n\nHello!")


def test_split_open_block_while_streaming_is_all_thinking():
    think, answer = split_thinking("<think>\nstill going")
    assert think == "still going" and answer == ""


def test_split_close_without_open():
    assert split_thinking("reasoning</think>answer") == ("reasoning", "answer")


def test_no_think():
    assert split_thinking("just a reply") == ("", "just a reply")


def test_clean_reply_strips_think_and_special_tokens():
    raw = "<think>secret plan</think>\n\n  Ship it on Monday. <|im_end|>\n<|im_start|>user\nmore"
    out = clean_reply(raw)
    assert out == "Ship it on Monday."
    assert "secret" not in out and "<" not in out


def test_clean_reply_unwraps_quotes_and_reply_prefix():
    assert clean_reply('Reply: "Tests are a love letter to future you."') == "Tests are a love letter to future you."


def test_truncate_at_word_boundary():
    text = ("word " * 100).strip()
    out = truncate_words(text, 280)
    assert len(out) <= 280 and not out.endswith(" ") and text.startswith(out) and out.endswith("word")
    assert truncate_words("short", 280) == "short"
    giant = "x" * 400
    assert truncate_words(giant) == "x" * 280


@pytest.mark.parametrize("bad,msg", [("", "empty"), ("   ", "empty"), (None, "empty"), ("a" * 281, "281")])
def test_validate_tweet_refuses(bad, msg):
    with pytest.raises(ValueError, match=msg):
        validate_tweet(bad)


def test_validate_tweet_accepts_280():
    assert validate_tweet("  " + "a" * 280 + " ") == "a" * 280
