"""Text rules every package shares: the tweet limit, the one URL rule, valid Unicode, and tweet validation.

The URL rule matches scheme links, ``www.``, ``t.co/``, ``pic.twitter.com/`` and bare domains with a common TLD
("see example.com/x"): a reply that carries a link got its likes for the link, so curation and retrieval both drop it.
"""

from __future__ import annotations

import re

__all__ = ["TWEET_LIMIT", "URL_RE", "INVALID_UNICODE_MESSAGE", "has_url", "require_valid_unicode", "validate_tweet"]

TWEET_LIMIT = 280

# TLDs that are also common words (so, is, to, me, us) are left out: "ok.so what" is not a link.
URL_RE = re.compile(
    r"(?i)(?:https?://|www\.|\bt\.co/|\bpic\.(?:twitter|x)\.com/)\S*"
    r"|\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|org|net|edu|gov|io|ai|co|dev|app|ly|gg|tv|xyz|info"
    r"|sh|uk|de|fr|es|ca|eu|biz|link|site|online|tech|blog|page)\b(?:/\S*)?"
)


# JSON lets a client send a lone UTF-16 surrogate (e.g. "\\ud800"); Python keeps it in the str, and the tokenizer then
# fails with an internal type error. Every user-text validator calls `require_valid_unicode`: one sentence everywhere.
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
INVALID_UNICODE_MESSAGE = (
    "The text contains an invalid character (a broken emoji or an unpaired surrogate); remove it and try again."
)
CONTROL_CHAR_MESSAGE = "The text contains a control character; remove it and try again."


def require_valid_unicode(text: str) -> str:
    """Return `text` unchanged, or raise ValueError with one sentence for the UI."""
    if _SURROGATE.search(text):
        raise ValueError(INVALID_UNICODE_MESSAGE)
    if _CONTROL.search(text):
        raise ValueError(CONTROL_CHAR_MESSAGE)
    return text


def has_url(text: str | None) -> bool:
    """True if the text has a link or a bare domain (the seed's 'no URLs' rule)."""
    return URL_RE.search(text or "") is not None


def validate_tweet(tweet: str | None, limit: int = TWEET_LIMIT) -> str:
    """Strip and refuse empty, non-text or over-long input with a sentence the UI can show as is."""
    if tweet is not None and not isinstance(tweet, str):
        raise ValueError("The tweet must be text.")
    text = (tweet or "").strip()
    if not text:
        raise ValueError("Please type a tweet first: the input is empty.")
    if len(text) > limit:
        raise ValueError(
            f"A tweet is at most {limit} characters; this one has {len(text)}. Shorten it by {len(text) - limit}."
        )
    return require_valid_unicode(text)
