"""Per-row quality rules: a pair either passes all of them or fails the first, in this fixed order (the
seed's table order in assets/README.md):

    too_short, too_long, has_url, low_followers, high_followers, too_early, has_media, low_likes, wrong_language

The set-level rules (exact_duplicate, near_duplicate) and the counts per rule live in funnel.py.

A rule whose input is unknown (``author_followers`` is None) fails: we cannot show the pair is clean, and the
funnel makes a missing field obvious. The exception is the reply delay: an unknown ``time_diff_seconds`` is not
"too early" (a CSV without timestamps would otherwise lose every pair), so the rule is skipped and the funnel
counts the pairs with ``no_timestamp``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from common.text import URL_RE

from .pairs import Pair

__all__ = ["ROW_REASONS", "FilterConfig", "check_pair", "guess_language"]

ROW_REASONS: tuple[str, ...] = (
    "too_short",
    "too_long",
    "has_url",
    "low_followers",
    "high_followers",
    "too_early",
    "has_media",
    "low_likes",
    "wrong_language",
)


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds for a training pair; ``None`` disables a bound. Defaults are the seed's (assets/README.md)."""

    min_reply_chars: int | None = 30  # seed: shorter replies ("lol same") carry no signal
    max_reply_chars: int | None = 280  # seed: over the tweet limit → rambling
    exclude_urls: bool = True  # seed: links (t.co, http, www, bare foo.io) — likes are for the link
    min_author_followers: int | None = 500  # seed: low-reach or bot-like accounts
    max_author_followers: int | None = 100_000  # seed: famous accounts, likes come from reach
    min_time_diff_seconds: int | None = 300  # seed: very early replies get likes for speed
    exclude_media: bool = True  # seed: engagement comes from the image, not the text
    min_likes: int | None = 5  # seed: 0–2 likes is too little signal
    dedup_exact: bool = True  # seed: same normalized text twice → keep the higher-engagement copy
    # Seed: lang == "en". Uses the `lang` field; when absent/undetermined, a cheap stopword guess
    # (guess_language) decides, and a pair it cannot place passes. None disables the rule.
    languages: tuple[str, ...] | None = ("en",)
    guess_missing_language: bool = True

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["languages"] = list(self.languages) if self.languages is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FilterConfig":
        d = dict(d)
        if d.get("languages") is not None:
            d["languages"] = tuple(d["languages"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


# --------------------------------------------------------------------------- language

_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "the and is are was to of in it that you this for with on not but have be my your just what".split()
    ),
    "es": frozenset("el la los las que es y en de un una por para con no pero muy más está son lo del".split()),
    "fr": frozenset("le la les et est des une un que pour pas avec dans ce qui sur je vous mais très du".split()),
    "de": frozenset("der die das und ist nicht ein eine ich zu mit auf für aber sehr auch den dem sich".split()),
    "pt": frozenset("o a os as que é e em de um uma para com não mas muito do da isso você".split()),
    "it": frozenset("il lo la gli le che è e di un una per con non ma molto sono del della questo".split()),
    "nl": frozenset("de het een en is niet van dat ik je met op voor maar heel ook zijn".split()),
}
_WORD_RE = re.compile(r"[^\W\d_]+", re.UNICODE)
_UNKNOWN_LANG = {"und", "zxx", "", "unknown"}


def guess_language(text: str) -> str | None:
    """Stopword vote over 7 Latin-script languages; None if there is no clear winner (≥2 hits, ahead by ≥2).

    Cheap on purpose (no dependency): it only runs when the export carries no ``lang``.
    """
    words = [w.casefold() for w in _WORD_RE.findall(URL_RE.sub(" ", text or ""))]
    if not words:
        return None
    scores = sorted(((sum(w in sw for w in words), lang) for lang, sw in _STOPWORDS.items()), reverse=True)
    (best, lang), (second, _) = scores[0], scores[1]
    return lang if best >= 2 and best - second >= 2 else None


def _effective_lang(p: Pair, cfg: FilterConfig) -> str | None:
    lang = (p.lang or "").strip().casefold()
    if lang and lang not in _UNKNOWN_LANG and not lang.startswith("q"):  # X's qme/qht/qam are "no language"
        return lang.split("-")[0].split("_")[0]
    return guess_language(p.reply) if cfg.guess_missing_language else None


# --------------------------------------------------------------------------- rules


def check_pair(p: Pair, cfg: FilterConfig = FilterConfig()) -> tuple[str, str] | None:
    """(reason, detail) of the first per-row rule the pair fails, or None if it passes them all."""
    n = len((p.reply or "").strip())
    if cfg.min_reply_chars is not None and n < cfg.min_reply_chars:
        return "too_short", f"{n} chars"
    if cfg.max_reply_chars is not None and n > cfg.max_reply_chars:
        return "too_long", f"{n} chars"
    if cfg.exclude_urls:
        m = URL_RE.search(p.reply or "")
        if m or p.has_url:
            return "has_url", m.group(0) if m else "has_url flag"
    f = p.author_followers
    if cfg.min_author_followers is not None and (f is None or f < cfg.min_author_followers):
        return "low_followers", f"{f} followers"
    if cfg.max_author_followers is not None and f is not None and f > cfg.max_author_followers:
        return "high_followers", f"{f} followers"
    t = p.time_diff_seconds
    if cfg.min_time_diff_seconds is not None and t is not None and t < cfg.min_time_diff_seconds:
        return "too_early", f"{t} s"
    if cfg.exclude_media and p.has_media:
        return "has_media", "has_media flag"
    if cfg.min_likes is not None and (p.likes or 0) < cfg.min_likes:
        return "low_likes", f"{p.likes} likes"
    if cfg.languages is not None:
        lang = _effective_lang(p, cfg)
        allowed = {x.casefold() for x in cfg.languages}
        if lang is not None and lang not in allowed:
            return "wrong_language", lang
    return None
