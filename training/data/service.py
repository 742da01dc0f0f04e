"""UI-free glue for the Data tab: import → funnel → review dataset in one call, review navigation, and the
small text/HTML renderers the tab shows. Everything here is plain Python so tests drive it without Gradio.

User text (tweets, replies, warnings quoting file content) only ever leaves this module through
``security.inert`` (Markdown) or as plain strings meant for Textbox components.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from common import sqlite
from security import inert

from .dedup import SemanticDedupConfig
from .export import list_exported
from .filters import FilterConfig, guess_language
from .funnel import REASONS, Funnel, run_funnel
from .importers import TWEET_FIELDS, ImportReport, import_file
from .pairs import PAIR_FIELDS, Pair
from .review_store import ReviewItem, ReviewStore, validate_dataset_name

__all__ = [
    "ImportOutcome",
    "ReviewView",
    "FILTER_CHOICES",
    "GUIDELINES",
    "parse_mapping",
    "parse_languages",
    "make_filter_config",
    "resolve_sources",
    "import_to_review",
    "funnel_rows",
    "import_report_markdown",
    "why_passed",
    "pair_stats_markdown",
    "format_seconds",
    "progress_html",
    "review_view",
    "step",
    "advance_after_decision",
    "record_decision",
    "export_rows",
    "default_dataset_name",
    "card_markdown",
    "dataset_summary",
]

Progress = Callable[[float, str], None]
FILTER_CHOICES = ("pending", "kept", "discarded", "edited", "all")

GUIDELINES = """\
**What makes a good reply** (keep it) — the model will learn to write like the pairs you keep:

- **Specific**: it answers *this* tweet (a detail, a number, a concrete experience), not any tweet on the topic.
- **Concise**: one idea, said plainly; no rambling, no thread-in-a-reply.
- **Adds something**: a useful fact, a sharp joke, a question that moves the conversation forward.
- **Stands alone**: makes sense without the images, links or earlier replies the model will never see.
- **Respectful**: disagreeing is fine; insults, pile-ons and harassment are not.

**Discard**: links or self-promotion, engagement bait ("who else?", "agree?", "follow for more"), generic
praise that fits any tweet ("so true!", "this 🔥"), hashtag or emoji walls, private information, anything
hateful, and replies whose likes clearly come from something other than the text.

**Edit** when the reply is good but has a fixable flaw (a typo, a trailing hashtag, a leading "@handle",
one sentence too many). Keep edits small: the original is stored, but the model learns from your text.
Edited replies must stay ≤ 280 characters with no links.
"""


# --------------------------------------------------------------------------- inputs


def parse_mapping(text: str | None) -> dict[str, str] | None:
    """Column mapping from the JSON box: ``{"our_field": "their_field"}``; empty → None (auto-detect)."""
    s = (text or "").strip()
    if not s:
        return None
    try:
        loaded = json.loads(s)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"Column mapping is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            'expected {"our_field": "their_column"}, e.g. {"tweet": "parent_text", "reply": "text"}'
        ) from None
    if not isinstance(loaded, dict) or not all(isinstance(v, (str, int)) for v in loaded.values()):
        raise ValueError('Column mapping must be a JSON object of strings: {"our_field": "their_column"}')
    known = set(PAIR_FIELDS) | set(TWEET_FIELDS) | {"tweet_created_at", "reply_created_at"}
    unknown = sorted(str(k) for k in loaded if k not in known)
    if unknown:
        raise ValueError(
            f"Column mapping: unknown field(s) {unknown}; the keys are our field names: {', '.join(sorted(known))}"
        )
    return {str(k): str(v) for k, v in loaded.items()} or None


def parse_languages(text: str | None) -> tuple[str, ...] | None:
    """ "en, de" → ("en", "de"); empty → None (no language filter)."""
    langs = tuple(x.strip().casefold() for x in (text or "").replace(";", ",").split(",") if x.strip())
    return langs or None


def _opt_int(name: str, v: Any) -> int | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a whole number or empty, got {v!r}") from None
    if f != f or f < 0:  # NaN or negative
        raise ValueError(f"{name}: expected a number ≥ 0 or empty, got {v!r}")
    return int(f)


def make_filter_config(
    *,
    min_reply_chars: Any = None,
    max_reply_chars: Any = None,
    exclude_urls: bool = True,
    min_author_followers: Any = None,
    max_author_followers: Any = None,
    min_time_diff_seconds: Any = None,
    exclude_media: bool = True,
    min_likes: Any = None,
    dedup_exact: bool = True,
    languages: str | None = "en",
    guess_missing_language: bool = True,
) -> FilterConfig:
    """FilterConfig from form values: an empty number disables that bound."""
    cfg = FilterConfig(
        min_reply_chars=_opt_int("min reply chars", min_reply_chars),
        max_reply_chars=_opt_int("max reply chars", max_reply_chars),
        exclude_urls=bool(exclude_urls),
        min_author_followers=_opt_int("min author followers", min_author_followers),
        max_author_followers=_opt_int("max author followers", max_author_followers),
        min_time_diff_seconds=_opt_int("min seconds after the tweet", min_time_diff_seconds),
        exclude_media=bool(exclude_media),
        min_likes=_opt_int("min likes", min_likes),
        dedup_exact=bool(dedup_exact),
        languages=parse_languages(languages),
        guess_missing_language=bool(guess_missing_language),
    )
    for lo, hi, what in (
        (cfg.min_reply_chars, cfg.max_reply_chars, "reply length"),
        (cfg.min_author_followers, cfg.max_author_followers, "author followers"),
    ):
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"{what}: the minimum ({lo}) is above the maximum ({hi})")
    return cfg


def resolve_sources(uploads: Iterable[Any] | None, server_paths: str | None) -> list[Path]:
    """Uploaded files (paths or objects with ``.name``/``path``) plus server paths (one per line or comma).

    Every path must be an existing readable file; the error names the first one that is not."""
    out: list[Path] = []
    for u in uploads or []:
        p = u if isinstance(u, (str, os.PathLike)) else (getattr(u, "path", None) or getattr(u, "name", None))
        if p:
            out.append(Path(p))
    for raw in (server_paths or "").replace(",", "\n").splitlines():
        s = raw.strip().strip('"').strip("'")
        if not s:
            continue
        p = Path(os.path.expanduser(s))
        if not p.exists():
            raise ValueError(f"Server path {s!r} does not exist on the server.")
        if p.is_dir():
            raise ValueError(
                f"Server path {s!r} is a folder; give the path of an export file (JSON, JSONL, CSV, optionally .gz)."
            )
        if not os.access(p, os.R_OK):
            raise ValueError(f"Server path {s!r} is not readable by the app.")
        out.append(p)
    if not out:
        raise ValueError("Nothing to import: upload a file or enter a server path.")
    seen: set[str] = set()
    uniq = []
    for p in out:
        k = str(p.resolve())
        if k not in seen:
            seen.add(k)
            uniq.append(p)
    return uniq


# --------------------------------------------------------------------------- import → funnel → review dataset


@dataclass
class ImportOutcome:
    dataset: str
    sources: list[str]
    reports: list[ImportReport]
    funnel: Funnel
    filter_config: FilterConfig
    semantic_threshold: float | None
    n_stored: int
    warnings: list[str] = field(default_factory=list)

    @property
    def formats(self) -> list[str]:
        return [f"{r.format} ({r.container})" for r in self.reports]

    def summary(self) -> str:
        f = self.funnel
        return (
            f"Imported **{f.n_in}** pairs → **{f.n_out}** passed the filters and dedup "
            f"({f.n_dropped} dropped) → review dataset **{inert(self.dataset)}** with {self.n_stored} pending pairs."
        )


def _noop(_f: float, _d: str) -> None:
    return None


def import_to_review(
    sources: Sequence[str | os.PathLike[str]],
    data_dir: str | os.PathLike[str],
    dataset: str,
    *,
    mapping: Mapping[str, str] | None = None,
    filter_config: FilterConfig = FilterConfig(),
    semantic_threshold: float | None = 0.85,
    replace: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    encoder: Any = None,
    store: ReviewStore | None = None,
    progress: Progress | None = None,
) -> ImportOutcome:
    """Import every source, run the funnel (filters, exact dedup, semantic dedup unless the threshold is None)
    and store the survivors as review dataset ``dataset``. Validation and import happen before anything is
    written, so a malformed file or a bad setting leaves the store untouched. Raises ValueError with a
    message meant for the user."""
    progress = progress or _noop
    validate_dataset_name(dataset)
    if semantic_threshold is not None and not 0.0 < float(semantic_threshold) <= 1.0:
        raise ValueError(f"semantic dedup threshold must be in (0, 1], got {semantic_threshold}")
    store = store or ReviewStore(data_dir)
    if not replace and any(d["name"] == dataset for d in store.datasets()):
        raise ValueError(
            f"Review dataset {dataset!r} already exists; tick 'Replace existing dataset' to overwrite it "
            "(its review decisions are lost) or pick another name."
        )
    if not sources:
        raise ValueError("Nothing to import: upload a file or enter a server path.")

    pairs: list[Pair] = []
    reports: list[ImportReport] = []
    warnings: list[str] = []
    seen: set[str] = set()
    n = len(sources)
    for i, src in enumerate(sources):
        progress(0.05 + 0.4 * i / n, f"Reading {Path(src).name} ({i + 1}/{n})")
        res = import_file(src, mapping)
        reports.append(res.report)
        dup = 0
        for p in res.pairs:
            if p.pair_id in seen:
                dup += 1
                continue
            seen.add(p.pair_id)
            pairs.append(p)
        if dup:
            warnings.append(f"{Path(src).name}: {dup} pairs skipped, their pair_id already came from an earlier file")
    if not pairs:
        raise ValueError(
            "The import produced no pairs (see the import report: replies whose parent tweet is missing "
            "cannot become pairs)."
        )

    progress(0.5, f"Filtering {len(pairs)} pairs")
    semantic: Any = False
    if semantic_threshold is not None:
        semantic = SemanticDedupConfig(threshold=float(semantic_threshold))
        progress(0.55, "Semantic dedup: embedding replies (cached after the first run)")
    fr = run_funnel(
        pairs,
        filter_config,
        semantic=semantic,
        encoder=encoder,
        cache_dir=str(cache_dir) if cache_dir is not None else str(Path(data_dir) / "embeddings"),
    )

    progress(0.92, f"Storing {len(fr.kept)} pairs for review")
    meta = {
        "source": ", ".join(str(s) for s in sources),
        "format": ", ".join(sorted({r.format for r in reports})),
        "filter_config": filter_config.to_dict(),
        "funnel": fr.funnel.to_dict(),
        "semantic": {"threshold": float(semantic_threshold)} if semantic_threshold is not None else None,
    }
    n_stored = store.create_dataset(dataset, fr.kept, replace=replace, meta=meta)
    progress(1.0, "Done")
    return ImportOutcome(
        dataset=dataset,
        sources=[str(s) for s in sources],
        reports=reports,
        funnel=fr.funnel,
        filter_config=filter_config,
        semantic_threshold=semantic_threshold,
        n_stored=n_stored,
        warnings=warnings,
    )


NO_TIMESTAMP_ROW = "no timestamp (early-reply rule skipped)"


def funnel_rows(funnel: Funnel | Mapping[str, Any]) -> list[list[Any]]:
    """[step, pairs] rows: in, each rule's drops (zeros included), out."""
    d = funnel.to_dict() if isinstance(funnel, Funnel) else dict(funnel)
    dropped = d.get("dropped") or {}
    no_ts = int(d.get("no_timestamp", 0) or 0)
    return (
        [["in", int(d.get("in", 0))]]
        + ([[NO_TIMESTAMP_ROW, no_ts]] if no_ts else [])
        + [[f"dropped: {r.replace('_', ' ')}", int(dropped.get(r, 0))] for r in REASONS]
        + [["out", int(d.get("out", 0))]]
    )


def import_report_markdown(outcome: ImportOutcome, max_ids: int = 20) -> str:
    lines: list[str] = []
    for src, r in zip(outcome.sources, outcome.reports):
        lines.append(
            f"**{inert(Path(src).name)}** — format **{inert(r.format)}** ({inert(r.container)}): "
            f"{r.n_records} records, {r.n_tweets} tweets, {r.n_replies} replies → **{r.n_pairs} pairs**; "
            f"{r.n_missing_parent} replies with a missing parent tweet."
        )
        if r.missing_parent:
            ids = ", ".join(inert(x) for x in r.missing_parent[:max_ids])
            more = f" (+{len(r.missing_parent) - max_ids} more)" if len(r.missing_parent) > max_ids else ""
            lines.append(f"- missing parents for replies: {ids}{more}")
        if r.skipped:
            lines.append(
                "- skipped: " + ", ".join(f"{inert(k.replace('_', ' '))} {int(v)}" for k, v in r.skipped.items())
            )
        for w in r.warnings[:max_ids]:
            lines.append(f"- ⚠️ {inert(w)}")
    for w in outcome.warnings:
        lines.append(f"- ⚠️ {inert(w)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- review: presenting one pair


def format_seconds(s: int | None) -> str:
    if s is None:
        return "unknown"
    s = int(s)
    if s < 120:
        return f"{s} s"
    if s < 2 * 3600:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def _num(v: int | None) -> str:
    return "unknown" if v is None else f"{int(v):,}"


def pair_stats_markdown(p: Pair) -> str:
    parts = [
        f"**{_num(p.likes)}** likes",
        f"**{_num(p.retweets)}** retweets",
        f"author followers **{_num(p.author_followers)}**",
        f"replied **{format_seconds(p.time_diff_seconds)}** after the tweet",
    ]
    extra = [f"{k} {inert(v)}" for k, v in (("topic", p.topic), ("tone", p.tone), ("lang", p.lang)) if v]
    return " · ".join(parts) + ((" · " + " · ".join(extra)) if extra else "")


def why_passed(p: Pair, meta: Mapping[str, Any] | None) -> list[str]:
    """One line per filter the pair passed at import, with its value and the threshold (Markdown-safe)."""
    fc = (meta or {}).get("filter_config")
    if not fc:
        return ["Filter settings were not recorded for this dataset."]
    cfg = FilterConfig.from_dict(fc)
    out: list[str] = []
    n = len((p.reply or "").strip())
    lo, hi = cfg.min_reply_chars, cfg.max_reply_chars
    if lo is not None or hi is not None:
        rng = f"{lo if lo is not None else 0}–{hi if hi is not None else '∞'}"
        out.append(f"length {n} chars (allowed {rng})")
    if cfg.exclude_urls:
        out.append("no link or bare domain in the reply")
    lo, hi = cfg.min_author_followers, cfg.max_author_followers
    if lo is not None or hi is not None:
        rng = f"{lo if lo is not None else 0:,}–{f'{hi:,}' if hi is not None else '∞'}"
        out.append(f"author followers {_num(p.author_followers)} (allowed {rng})")
    if cfg.min_time_diff_seconds is not None:
        out.append(
            f"replied {format_seconds(p.time_diff_seconds)} after the tweet (≥ "
            f"{format_seconds(cfg.min_time_diff_seconds)})"
        )
    if cfg.exclude_media:
        out.append("no image or video attached")
    if cfg.min_likes is not None:
        out.append(f"{_num(p.likes)} likes (≥ {cfg.min_likes})")
    if cfg.languages is not None:
        lang = (p.lang or "").strip()
        shown = lang or (
            f"guessed {guess_language(p.reply)}"
            if cfg.guess_missing_language and guess_language(p.reply)
            else "undetermined"
        )
        out.append(f"language {inert(shown)} (allowed: {inert(', '.join(cfg.languages))})")
    if cfg.dedup_exact:
        out.append("unique text (exact duplicates removed, the higher-engagement copy kept)")
    sem = (meta or {}).get("semantic")
    if sem and sem.get("threshold") is not None:
        out.append(f"no near-duplicate with higher engagement (cosine ≤ {float(sem['threshold']):.2f})")
    return out


def progress_html(progress: Mapping[str, int] | None) -> str:
    """A stacked bar built only from integers (nothing user-supplied reaches the HTML)."""
    if not progress:
        return (
            '<div id="review-progress-bar" class="review-progress" data-reviewed="0" data-total="0">'
            "No dataset selected.</div>"
        )
    total = max(0, int(progress.get("total", 0)))
    kept, edited, disc = (max(0, int(progress.get(k, 0))) for k in ("kept", "edited", "discarded"))
    reviewed = kept + edited + disc
    pending = max(0, total - reviewed)
    denom = total or 1
    pct = lambda v: f"{100.0 * v / denom:.2f}%"  # noqa: E731
    segs = "".join(
        f'<div title="{name}: {v}" style="width:{pct(v)};background:{color}"></div>'
        for name, v, color in (("kept", kept, "#55a868"), ("edited", edited, "#4c72b0"), ("discarded", disc, "#c44e52"))
        if v
    )
    return (
        f'<div id="review-progress-bar" class="review-progress" data-reviewed="{reviewed}" data-total="{total}">'
        '<div style="display:flex;height:14px;border-radius:7px;overflow:hidden;background:#e5e7eb;margin:4px '
        f'0">{segs}</div>'
        f'<div style="font-size:14px"><b>{reviewed} / {total} reviewed</b> ({100.0 * reviewed / denom:.0f}%) · '
        f'<span style="color:#3d8b50">kept {kept}</span> · <span style="color:#4c72b0">edited {edited}</span> · '
        f'<span style="color:#c44e52">discarded {disc}</span> · pending {pending}</div></div>'
    )


# --------------------------------------------------------------------------- review: navigation (state lives in the
# store)


@dataclass
class ReviewView:
    dataset: str | None
    status_filter: str
    item: ReviewItem | None
    position: int  # 1-based position of the item within the filter; 0 when none
    count: int  # items matching the filter
    progress: dict[str, int] | None
    meta: dict[str, Any] | None = None

    def position_markdown(self) -> str:
        if not self.dataset:
            return "No review dataset yet: import one above."
        if self.item is None:
            if self.status_filter == "pending":
                return (
                    "✅ **Every pair in this dataset has been reviewed.** Switch the filter to see decisions, "
                    "or export below."
                )
            return f"No pairs with status **{self.status_filter}**."
        it = self.item
        who = f" by {inert(it.reviewer)}" if it.reviewer else ""
        return (
            f"Pair **{self.position} of {self.count}** ({self.status_filter}) · id {inert(it.pair_id)} · "
            f"status **{it.status}**{who if it.status != 'pending' else ''}"
        )


def _check_filter(status_filter: str | None) -> str:
    f = (status_filter or "pending").strip().casefold()
    if f not in FILTER_CHOICES:
        raise ValueError(f"unknown status filter {status_filter!r}; expected one of {', '.join(FILTER_CHOICES)}")
    return f


def _query(store: ReviewStore, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
    # Read-only index queries on the store's table (idx/status only), so navigating a 1M-pair dataset never
    # loads its rows; the decision writes all go through ReviewStore.decide.
    conn = sqlite.connect(store.path, row_factory=False)
    try:
        return conn.execute(sql, list(args)).fetchall()
    finally:
        conn.close()


def _where(dataset: str, f: str) -> tuple[str, list[Any]]:
    if f == "all":
        return "dataset=?", [dataset]
    return "dataset=? AND status=?", [dataset, f]


def _neighbor(store: ReviewStore, dataset: str, f: str, index: int | None, direction: int) -> int | None:
    w, args = _where(dataset, f)
    if index is None:
        rows = _query(
            store, f"SELECT idx FROM pairs WHERE {w} ORDER BY idx {'ASC' if direction >= 0 else 'DESC'} LIMIT 1", args
        )
    elif direction > 0:
        rows = _query(store, f"SELECT idx FROM pairs WHERE {w} AND idx>? ORDER BY idx ASC LIMIT 1", args + [int(index)])
    else:
        rows = _query(
            store, f"SELECT idx FROM pairs WHERE {w} AND idx<? ORDER BY idx DESC LIMIT 1", args + [int(index)]
        )
    return int(rows[0][0]) if rows else None


def _view(store: ReviewStore, dataset: str, f: str, index: int | None) -> ReviewView:
    w, args = _where(dataset, f)
    count = int(_query(store, f"SELECT COUNT(*) FROM pairs WHERE {w}", args)[0][0])
    item = None
    position = 0
    if index is not None:
        item = store.get(dataset, index)
        if f != "all" and item.status != f:
            item = None
    if item is not None:
        position = int(_query(store, f"SELECT COUNT(*) FROM pairs WHERE {w} AND idx<=?", args + [item.index])[0][0])
    return ReviewView(dataset, f, item, position, count, store.progress(dataset), store.meta(dataset))


def review_view(
    store: ReviewStore, dataset: str | None, status_filter: str = "pending", index: int | None = None
) -> ReviewView:
    """The pair at ``index`` if it matches the filter, else the first pair that does (for 'pending': the next
    pair nobody has reviewed, so a reload or a second browser resumes where the review stands)."""
    f = _check_filter(status_filter)
    if not dataset:
        return ReviewView(None, f, None, 0, 0, None)
    store.progress(dataset)  # KeyError for an unknown dataset
    if index is not None:
        try:
            v = _view(store, dataset, f, int(index))
        except IndexError:
            v = None
        if v is not None and v.item is not None:
            return v
        nxt = _neighbor(store, dataset, f, int(index), +1)
        if nxt is not None:
            return _view(store, dataset, f, nxt)
    return _view(store, dataset, f, _neighbor(store, dataset, f, None, +1))


def step(store: ReviewStore, dataset: str | None, status_filter: str, index: int | None, direction: int) -> ReviewView:
    """Next (direction > 0) or previous pair within the filter; stays put at either end."""
    f = _check_filter(status_filter)
    if not dataset:
        return ReviewView(None, f, None, 0, 0, None)
    target = _neighbor(store, dataset, f, None if index is None else int(index), direction)
    if target is None:
        return review_view(store, dataset, f, index)
    return _view(store, dataset, f, target)


def advance_after_decision(store: ReviewStore, dataset: str, status_filter: str, index: int) -> ReviewView:
    """After keep/discard: the next pair in the filter after ``index``, wrapping to the first one."""
    f = _check_filter(status_filter)
    nxt = _neighbor(store, dataset, f, int(index), +1)
    if nxt is None:
        nxt = _neighbor(store, dataset, f, None, +1)
    return _view(store, dataset, f, nxt)


def record_decision(
    store: ReviewStore,
    dataset: str | None,
    index: int | None,
    decision: str,
    edited_text: str | None = None,
    reviewer: str | None = None,
) -> ReviewItem:
    """keep / discard / edit / pending for the pair at ``index``; written to SQLite before returning."""
    if not dataset:
        raise ValueError("Pick a review dataset first.")
    if index is None:
        raise ValueError("No pair is selected.")
    item = store.get(dataset, int(index))
    return store.decide(dataset, item.pair_id, decision, edited_text=edited_text, reviewer=reviewer)


# --------------------------------------------------------------------------- export list


def export_rows(data_dir: str | os.PathLike[str]) -> list[list[Any]]:
    return [
        [
            e.name,
            e.n_total,
            e.n_train,
            e.n_eval,
            e.n_edited,
            e.source_dataset or "",
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(e.created_at)),
            e.path,
        ]
        for e in list_exported(data_dir)
    ]


def default_dataset_name(sources: Sequence[str | os.PathLike[str]]) -> str:
    """A valid review-dataset name from the first file's name: 'sample_pairs.jsonl.gz' → 'sample_pairs'."""
    import re

    stem = Path(str(sources[0])).name.split(".")[0] if sources else ""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("._-")[:64]
    return name if name and name[0].isalnum() else "dataset"


def card_markdown(export_path: str | os.PathLike[str]) -> str:
    """The export's dataset card for display: front matter and image lines dropped (the images are shown apart)."""
    try:
        text = (Path(export_path) / "README.md").read_text(encoding="utf-8")
    except OSError:
        return ""
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            text = text[end + 4 :]
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("![")).strip()


def dataset_summary(store: ReviewStore, dataset: str | None) -> tuple[str, Funnel | None]:
    """(Markdown line about how a review dataset was made, its funnel) from the stored meta, so the import
    results are shown again after a reload. ('', None) when there is nothing recorded."""
    if not dataset:
        return "", None
    meta = store.meta(dataset)
    f = meta.get("funnel") or {}
    funnel = None
    if "in" in f:
        funnel = Funnel(
            n_in=int(f.get("in", 0)),
            dropped={r: int((f.get("dropped") or {}).get(r, 0)) for r in REASONS},
            n_out=int(f.get("out", 0)),
            no_timestamp=int(f.get("no_timestamp", 0) or 0),
        )
    parts = [f"**Review dataset {inert(dataset)}**"]
    if meta.get("format"):
        parts.append(f"format {inert(str(meta['format']))}")
    if meta.get("source"):
        parts.append(f"from {inert(Path(str(meta['source']).split(', ')[0]).name)}")
    if funnel is not None:
        parts.append(f"funnel {funnel.n_in} in → {funnel.n_out} out")
    return " · ".join(parts), funnel
