"""The filter funnel: per-row rules (filters.py), then exact dedup, then semantic dedup (dedup.py), with
the count each rule dropped.

Every dropped pair keeps the *first* rule it fails. The set-level rules only look at rows that passed
every per-row rule, so a rejected copy never displaces a good one. Lives apart from filters.py and
dedup.py so that neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .dedup import SemanticDedupConfig, semantic_dedup
from .filters import ROW_REASONS, FilterConfig, check_pair
from .importers import normalize_text
from .pairs import Dropped, Pair, engagement

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["REASONS", "Funnel", "FilterResult", "apply_filters", "run_funnel"]

REASONS: tuple[str, ...] = ROW_REASONS + ("exact_duplicate", "near_duplicate")


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
        return {
            "in": self.n_in,
            "dropped": dict(self.dropped),
            "dropped_total": self.n_dropped,
            "out": self.n_out,
            "no_timestamp": self.no_timestamp,
        }

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
    semantic: SemanticDedupConfig | bool | None = True,
    encoder: Any = None,
    cache_dir: str | None = None,
) -> FilterResult:
    """Filters + exact dedup + (optionally) semantic dedup, as one funnel.

    ``semantic``: True for the default SemanticDedupConfig, a config, or False/None to skip it.
    """
    res = apply_filters(pairs, config)
    if not semantic:
        return res
    cfg = semantic if isinstance(semantic, SemanticDedupConfig) else SemanticDedupConfig()
    dd = semantic_dedup(res.kept, cfg, encoder=encoder, cache_dir=cache_dir)
    res.funnel.dropped["near_duplicate"] += len(dd.dropped)
    res.funnel.n_out = len(dd.kept)
    return FilterResult(kept=dd.kept, dropped=res.dropped + dd.dropped, funnel=res.funnel)
