"""Lone surrogates and control characters get one clear sentence from the one tweet validator (Generate and Arena)."""

from __future__ import annotations

import pytest

from common.text import INVALID_UNICODE_MESSAGE, require_valid_unicode
from common.text import validate_tweet as generate_validate


@pytest.mark.parametrize("bad", ["hi \ud800 there", "\udfff", "emoji half \ud83d"])
def test_lone_surrogate_is_one_sentence(bad):
    with pytest.raises(ValueError) as exc:
        generate_validate(bad)
    assert str(exc.value) == INVALID_UNICODE_MESSAGE


def test_valid_text_passes_unchanged():
    s = "Coffee ☕ or tea 🍵? Ünïcödé, tabs\tand\nnewlines are fine"
    assert require_valid_unicode(s) == s
    assert generate_validate(" 🍵 ") == "🍵"
    with pytest.raises(ValueError, match="control character"):
        require_valid_unicode("bell\x07")
