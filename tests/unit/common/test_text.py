"""The shared text rules: one tweet limit, one URL rule, one validation message."""

from __future__ import annotations

import pytest

from common.text import TWEET_LIMIT, has_url, validate_tweet


@pytest.mark.parametrize(
    "text",
    [
        "see https://x.co/a",
        "www.example.org",
        "t.co/abc",
        "pic.twitter.com/x",
        "read example.com/path",
        "docs at foo.io",
    ],
)
def test_links_are_urls(text):
    assert has_url(text)


@pytest.mark.parametrize("text", ["ok.so what", "Ship small, ship often.", "e.g. this", "3.14 is pi", ""])
def test_words_are_not_urls(text):
    assert not has_url(text)


def test_validate_tweet():
    assert TWEET_LIMIT == 280
    assert validate_tweet("  hi  ") == "hi"
    with pytest.raises(ValueError, match="must be text"):
        validate_tweet(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most 280 characters; this one has 281"):
        validate_tweet("x" * 281)
