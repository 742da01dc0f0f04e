"""Text typed by visitors must be valid Unicode before it reaches a tokenizer, a database or a log.

JSON lets a client send a lone UTF-16 surrogate (e.g. "\\ud800"); Python keeps it in the str, and the tokenizer then
fails with an internal type error. Every user-text validator calls `require_valid_unicode` so the answer is one
sentence, the same everywhere.
"""
from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

INVALID_UNICODE_MESSAGE = ("The text contains an invalid character (a broken emoji or an unpaired surrogate); "
                           "remove it and try again.")
CONTROL_CHAR_MESSAGE = "The text contains a control character; remove it and try again."


def require_valid_unicode(text: str) -> str:
    """Return `text` unchanged, or raise ValueError with one sentence for the UI."""
    if _SURROGATE.search(text):
        raise ValueError(INVALID_UNICODE_MESSAGE)
    if _CONTROL.search(text):
        raise ValueError(CONTROL_CHAR_MESSAGE)
    return text
