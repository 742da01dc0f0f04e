"""Quality filters and the filter funnel.

Every dropped pair keeps the *first* rule it fails, in this fixed order (the seed's table order in
assets/README.md, per-row rules first, then the set-level rules, which only look at rows that passed
every per-row rule so a rejected copy never displaces a good one):

    too_short, too_long, has_url, low_followers, high_followers, too_early, has_media, low_likes,
    wrong_language, exact_duplicate, near_duplicate (semantic, training/data_dedup.py)

A rule whose input is unknown (``author_followers`` is None) fails: we cannot show the pair is clean, and the
funnel makes a missing field obvious. The exception is the reply delay: an unknown ``time_diff_seconds`` is not
"too early" (a CSV without timestamps would otherwise lose every pair), so the rule is skipped and the funnel
counts the pairs with ``no_timestamp``.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .data_import import URL_RE, Pair, contains_url, normalize_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .data_dedup import SemanticDedupConfig

__all__ = [
    "REASONS",
    "FilterConfig",
    "Dropped",
    "Funnel",
    "FilterResult",
    "engagement",
    "check_pair",
    "guess_language",
    "apply_filters",
    "run_funnel",
]

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
REASONS: tuple[str, ...] = ROW_REASONS + ("exact_duplicate", "near_duplicate")


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


@dataclass(slots=True)
class Dropped:
    """A rejected pair and why; ``detail`` holds the offending value or the kept duplicate's pair_id."""

    pair: Pair
    reason: str
    detail: str | None = None


def engagement(p: Pair) -> int:
    """Engagement score used to pick which duplicate to keep: likes + 2·retweets (a retweet is rarer and
    puts the reply in front of new people, so it counts double)."""
    return int(p.likes or 0) + 2 * int(p.retweets or 0)


# --------------------------------------------------------------------------- language

_STOPWORDS: dict[str, frozenset[str]] = {
    "en": frozenset("the and is are was to of in it that you this for with on not but have be my your just what".split()),
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


# --------------------------------------------------------------------------- funnel


@dataclass
class Funnel:
    """Counts in, dropped per reason (fixed order, zeros included), and out."""

    n_in: int
    dropped: dict[str, int] = field(default_factory=lambda: {r: 0 for r in REASONS})
    n_out: int = 0
    no_timestamp: int = 0  # pairs whose reply delay is unknown: the too_early rule was skipped for them

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        return {"in": self.n_in, "dropped": dict(self.dropped), "dropped_total": self.n_dropped, "out": self.n_out,
                "no_timestamp": self.no_timestamp}

    def plot(self, title: str = "Filter funnel") -> "Figure":
        """Horizontal bars: in, each rule's drops, out — counts labelled. Uses Figure directly (no pyplot
        global state), so it is safe from Gradio worker threads."""
        from matplotlib.figure import Figure

        labels = ["in"] + [r.replace("_", " ") for r in self.dropped] + ["out"]
        values = [self.n_in] + list(self.dropped.values()) + [self.n_out]
        colors = ["#4c72b0"] + ["#dd8452"] * len(self.dropped) + ["#55a868"]
        fig = Figure(figsize=(7, 0.35 * len(labels) + 1.2))
        ax = fig.add_subplot(111)
        bars = ax.barh(range(len(labels)), values, color=colors)
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.bar_label(bars, labels=[str(v) for v in values], padding=3)
        ax.set_xlim(0, max(values + [1]) * 1.15)
        ax.set_xlabel("pairs")
        ax.set_title(title)
        fig.tight_layout()
        return fig


@dataclass
class FilterResult:
    kept: list[Pair]
    dropped: list[Dropped]
    funnel: Funnel

    def reasons(self) -> dict[str, str]:
        """pair_id → reason, for the review UI."""
        return {d.pair.pair_id: d.reason for d in self.dropped}


def apply_filters(pairs: Iterable[Pair], config: FilterConfig = FilterConfig()) -> FilterResult:
    """Per-row rules, then exact-duplicate removal among the survivors (keeps input order)."""
    pairs = list(pairs)
    funnel = Funnel(n_in=len(pairs))
    dropped: list[Dropped] = []
    survivors: list[Pair] = []
    for p in pairs:
        if config.min_time_diff_seconds is not None and p.time_diff_seconds is None:
            funnel.no_timestamp += 1
        fail = check_pair(p, config)
        if fail is None:
            survivors.append(p)
        else:
            dropped.append(Dropped(p, fail[0], fail[1]))
            funnel.dropped[fail[0]] += 1

    if config.dedup_exact:
        best: dict[str, int] = {}  # normalized text → index in survivors of the copy to keep
        for i, p in enumerate(survivors):
            key = normalize_text(p.reply)
            j = best.get(key)
            if j is None or engagement(p) > engagement(survivors[j]):  # ties: first copy wins
                best[key] = i
        keep_idx = set(best.values())
        kept = []
        for i, p in enumerate(survivors):
            if i in keep_idx:
                kept.append(p)
            else:
                winner = survivors[best[normalize_text(p.reply)]]
                dropped.append(Dropped(p, "exact_duplicate", winner.pair_id))
                funnel.dropped["exact_duplicate"] += 1
    else:
        kept = survivors
    funnel.n_out = len(kept)
    return FilterResult(kept=kept, dropped=dropped, funnel=funnel)


def run_funnel(
    pairs: Sequence[Pair],
    config: FilterConfig = FilterConfig(),
    semantic: "SemanticDedupConfig | bool | None" = True,
    encoder: Any = None,
    cache_dir: str | None = None,
) -> FilterResult:
    """Filters + exact dedup + (optionally) semantic dedup, as one funnel.

    ``semantic``: True for the default SemanticDedupConfig, a config, or False/None to skip it.
    """
    res = apply_filters(pairs, config)
    if not semantic:
        return res
    from .data_dedup import SemanticDedupConfig, semantic_dedup

    cfg = semantic if isinstance(semantic, SemanticDedupConfig) else SemanticDedupConfig()
    dd = semantic_dedup(res.kept, cfg, encoder=encoder, cache_dir=cache_dir)
    res.funnel.dropped["near_duplicate"] += len(dd.dropped)
    res.funnel.n_out = len(dd.kept)
    return FilterResult(kept=dd.kept, dropped=res.dropped + dd.dropped, funnel=res.funnel)


# Re-exported for callers that validate text (review store) without importing data_import.
__all__ += ["contains_url", "URL_RE"]
