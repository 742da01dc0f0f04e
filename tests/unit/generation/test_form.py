from __future__ import annotations

import pytest

from common.text import validate_tweet
from generation.form import char_counter, parse_seed


@pytest.mark.parametrize(
    "raw, seed", [(None, None), ("", None), ("   ", None), ("7", 7), (" 42 ", 42), (3.0, 3), ("0", 0)]
)
def test_parse_seed(raw, seed):
    assert parse_seed(raw) == seed


@pytest.mark.parametrize("raw", ["abc", "1.5", "-1", str(2**32)])
def test_parse_seed_refuses(raw):
    with pytest.raises(ValueError, match="seed must be a whole number"):
        parse_seed(raw)


def test_counter_counts_as_the_validator():
    assert char_counter("") == "0/280 characters"
    assert char_counter("  hi  ") == "2/280 characters"
    assert char_counter("x" * 281) == "281/280 characters — 1 too many"
    validate_tweet("x" * 280)
    with pytest.raises(ValueError):
        validate_tweet("x" * 281)
