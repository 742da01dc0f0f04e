"""Export a reviewed dataset for training: JSONL + a ``datasets.DatasetDict`` + a dataset card.

Layout of ``<data_dir>/datasets/<name>/`` (``load_from_disk(path)`` works on the folder itself)::

    dataset_dict.json, train/, eval/   DatasetDict (grouped split from split.py)
    pairs.jsonl                        every exported row with its split
    README.md                          dataset card: counts, filters used, histograms
    length_hist.png, engagement_hist.png
    export.json                        manifest read by list_exported (Training tab)

Built in a hidden temp folder and renamed into place, so the Training tab never sees half an export.
``sample_rows`` gives the bundled sample in the same row format, so the trainer reads only this format.
Only plain fields are stored; chat formatting belongs to training/formatting.py.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from common.jsonio import replace_dir

from .filters import FilterConfig
from .funnel import apply_filters
from .importers import import_file
from .pairs import Pair
from .review_store import ReviewStore, validate_dataset_name
from .split import group_key, split_pairs

__all__ = [
    "ExportInfo",
    "EXPORT_COLUMNS",
    "export_dataset",
    "export_pairs",
    "list_exported",
    "datasets_dir",
    "split_rows",
    "sample_rows",
]

EXPORT_COLUMNS = ("pair_id", "tweet_id", "tweet", "reply", "likes", "retweets", "edited")
MANIFEST = "export.json"


@dataclass
class ExportInfo:
    name: str
    path: str
    n_total: int
    n_train: int
    n_eval: int
    n_edited: int
    source_dataset: str | None
    created_at: float
    eval_fraction: float
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def datasets_dir(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / "datasets"


def _features() -> Any:
    from datasets import Features, Value

    return Features(
        {
            "pair_id": Value("string"),
            "tweet_id": Value("string"),
            "tweet": Value("string"),
            "reply": Value("string"),
            "likes": Value("int64"),
            "retweets": Value("int64"),
            "edited": Value("bool"),
        }
    )


def _row(p: Pair, edited: bool) -> dict[str, Any]:
    return {
        "pair_id": p.pair_id,
        "tweet_id": p.tweet_id,
        "tweet": p.tweet,
        "reply": p.reply,
        "likes": int(p.likes or 0),
        "retweets": int(p.retweets or 0),
        "edited": bool(edited),
    }


def split_rows(
    pairs: Sequence[tuple[Pair, bool]], eval_fraction: float = 0.1, seed: int = 42
) -> tuple[list[dict], list[dict]]:
    """(train rows, eval rows) of (pair, was_edited) tuples: the grouped split, then the exported columns."""
    train, evl = split_pairs(list(pairs), eval_fraction=eval_fraction, seed=seed, key=lambda t: group_key(t[0]))
    return [_row(p, e) for p, e in train], [_row(p, e) for p, e in evl]


def sample_rows(path: str | os.PathLike[str], eval_fraction: float = 0.1, seed: int = 42) -> list[dict[str, Any]]:
    """A raw pairs file as the rows of an export's ``pairs.jsonl`` (with ``split``), for training without a review.

    The funnel's rules with the seed's defaults and the export's split. No semantic dedup: it needs the MiniLM encoder,
    which the GPU hosts lack.
    """
    kept = apply_filters(import_file(path).pairs, FilterConfig()).kept
    train, evl = split_rows([(p, False) for p in kept], eval_fraction, seed)
    return [{**r, "split": "train"} for r in train] + [{**r, "split": "eval"} for r in evl]


def _histograms(rows: list[dict[str, Any]], out: Path) -> None:
    import numpy as np
    from matplotlib.figure import Figure

    lengths = [len(r["reply"]) for r in rows]
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot(111)
    ax.hist(lengths, bins=min(30, max(5, len(set(lengths)))), color="#4c72b0")
    ax.set_xlabel("reply length (characters)")
    ax.set_ylabel("pairs")
    ax.set_title("Reply length")
    fig.tight_layout()
    fig.savefig(out / "length_hist.png", dpi=100)

    likes = np.array([r["likes"] for r in rows], dtype=float)
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot(111)
    bins = np.logspace(0, np.log10(max(likes.max(initial=1.0), 1.0) + 1), 25)
    ax.hist(likes + 1, bins=bins, color="#55a868")
    ax.set_xscale("log")
    ax.set_xlabel("likes + 1 (log scale)")
    ax.set_ylabel("pairs")
    ax.set_title("Reply engagement")
    fig.tight_layout()
    fig.savefig(out / "engagement_hist.png", dpi=100)


def _card(info: ExportInfo, meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    import statistics

    lengths = [len(r["reply"]) for r in rows]
    likes = [r["likes"] for r in rows]
    fc = meta.get("filter_config")
    funnel = meta.get("funnel")
    lines = [
        "---",
        "language: [en]",
        "task_categories: [text-generation]",
        "tags: [twitter, replies, reply-arena]",
        "---",
        f"# {info.name}",
        "",
        "Tweet → reply pairs for fine-tuning a reply model (Reply Arena). Exported from the review store"
        + (f" dataset `{info.source_dataset}`" if info.source_dataset else "")
        + " on "
        + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(info.created_at))
        + ".",
        "",
        "## Counts",
        "",
        "| split | pairs |",
        "|---|---|",
        f"| train | {info.n_train} |",
        f"| eval | {info.n_eval} |",
        f"| total | {info.n_total} ({info.n_edited} edited by a reviewer) |",
        "",
        f"Split: {1 - info.eval_fraction:.0%}/{info.eval_fraction:.0%}, seed {info.seed}, grouped by parent tweet "
        "(`conversation_id` or `tweet_id`), so no tweet appears in both splits.",
        "",
        f"Reply length: median {statistics.median(lengths):.0f} chars (min {min(lengths)}, max {max(lengths)}). "
        f"Likes: median {statistics.median(likes):.0f} (min {min(likes)}, max {max(likes)}).",
        "",
        "![Reply length histogram](length_hist.png)",
        "",
        "![Engagement histogram](engagement_hist.png)",
        "",
        "## Filters used",
        "",
    ]
    if fc:
        lines += ["| setting | value |", "|---|---|"] + [f"| `{k}` | {json.dumps(v)} |" for k, v in fc.items()]
    else:
        lines.append("Not recorded (pairs were loaded into the review store without a filter config).")
    if funnel:
        lines += ["", "### Funnel", "", f"In: {funnel.get('in')}", "", "| dropped because | pairs |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in (funnel.get("dropped") or {}).items() if v]
        lines += ["", f"Out (sent to review): {funnel.get('out')}"]
    if meta.get("source"):
        lines += [
            "",
            f"Source file: `{meta['source']}`" + (f" (format `{meta['format']}`)" if meta.get("format") else ""),
        ]
    lines += [
        "",
        "## Fields",
        "",
        "`pair_id`, `tweet_id`, `tweet`, `reply` (the reviewer's edit when there is one), `likes`, `retweets`, "
        "`edited`. Plain text only: the chat template and reply-only loss are applied by `training/formatting.py`.",
        "",
    ]
    return "\n".join(lines)


def export_pairs(
    data_dir: str | os.PathLike[str],
    name: str,
    pairs: Sequence[tuple[Pair, bool]],
    *,
    meta: dict[str, Any] | None = None,
    source_dataset: str | None = None,
    eval_fraction: float = 0.1,
    seed: int = 42,
    overwrite: bool = False,
) -> ExportInfo:
    """Write (pair, was_edited) rows as an export folder, atomically."""
    from datasets import Dataset, DatasetDict

    validate_dataset_name(name)
    if not pairs:
        raise ValueError(f"nothing to export for {name!r}: no kept or edited pairs")
    root = datasets_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    if final.exists() and not overwrite:
        raise ValueError(f"export {final} already exists; pass overwrite=True to replace it")

    train_rows, eval_rows = split_rows(pairs, eval_fraction, seed)
    info = ExportInfo(
        name=name,
        path=str(final),
        n_total=len(pairs),
        n_train=len(train_rows),
        n_eval=len(eval_rows),
        n_edited=sum(1 for _, e in pairs if e),
        source_dataset=source_dataset,
        created_at=time.time(),
        eval_fraction=eval_fraction,
        seed=seed,
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=root))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the export is meant to be read by the trainer/other users
        feats = _features()
        DatasetDict(
            {
                "train": Dataset.from_list(train_rows, features=feats),
                "eval": Dataset.from_list(eval_rows, features=feats),
            }
        ).save_to_disk(str(tmp))
        with open(tmp / "pairs.jsonl", "w", encoding="utf-8") as fh:
            for split, rows in (("train", train_rows), ("eval", eval_rows)):
                for r in rows:
                    fh.write(json.dumps({**r, "split": split}, ensure_ascii=False) + "\n")
        all_rows = train_rows + eval_rows
        _histograms(all_rows, tmp)
        (tmp / "README.md").write_text(_card(info, dict(meta or {}), all_rows), encoding="utf-8")
        (tmp / MANIFEST).write_text(
            json.dumps({**info.to_dict(), "files": sorted(os.listdir(tmp)) + [MANIFEST]}, indent=2), encoding="utf-8"
        )
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def export_dataset(
    data_dir: str | os.PathLike[str],
    dataset: str,
    name: str | None = None,
    *,
    store: ReviewStore | None = None,
    eval_fraction: float = 0.1,
    seed: int = 42,
    include_pending: bool = False,
    overwrite: bool = False,
) -> ExportInfo:
    """Export the kept + edited pairs of review dataset ``dataset`` (edited text replaces the original)
    to ``<data_dir>/datasets/<name or dataset>/``. ``include_pending`` also exports unreviewed pairs
    (for a pipeline run without human review)."""
    store = store or ReviewStore(data_dir)
    rows = store.reviewed_pairs(dataset, include_pending=include_pending)
    meta = store.meta(dataset)
    return export_pairs(
        data_dir,
        name or dataset,
        rows,
        meta=meta,
        source_dataset=dataset,
        eval_fraction=eval_fraction,
        seed=seed,
        overwrite=overwrite,
    )


def list_exported(data_dir: str | os.PathLike[str]) -> list[ExportInfo]:
    """Finished exports, newest first (hidden temp/old folders and folders without a manifest are skipped)."""
    root = datasets_dir(data_dir)
    if not root.is_dir():
        return []
    out: list[ExportInfo] = []
    for d in root.iterdir():
        if d.name.startswith(".") or not (d / MANIFEST).is_file():
            continue
        try:
            m = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
            m["path"] = str(d)
            out.append(ExportInfo(**{k: m[k] for k in ExportInfo.__dataclass_fields__}))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(out, key=lambda e: e.created_at, reverse=True)
