"""Command line for the data pipeline (the Data tab does the same through the same functions).

    python -m training.data.cli import SRC [--map ours=theirs ...] [--out pairs.jsonl]
    python -m training.data.cli funnel SRC [--no-semantic] [--threshold 0.85] [--min-likes 5] ...
                                       [--plot funnel.png] [--out kept.jsonl] [--data-dir D --dataset NAME [--replace]]
    python -m training.data.cli export --data-dir D --dataset NAME [--name OUT] [--include-pending] [--overwrite]
    python -m training.data.cli list --data-dir D

Results go to stdout as JSON; errors to stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .dedup import SemanticDedupConfig
from .export import export_dataset, list_exported
from .filters import FilterConfig
from .funnel import run_funnel
from .importers import import_file, write_pairs_jsonl
from .review_store import DB_NAME, ReviewStore


def _mapping(args: argparse.Namespace) -> dict[str, str] | None:
    m: dict[str, str] = {}
    if args.mapping:
        src = args.mapping
        text = Path(src).read_text(encoding="utf-8") if os.path.isfile(src) else src
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f'--mapping: not valid JSON ({exc.msg}); expected {{"our_field": "their_field"}}'
            ) from None
        if not isinstance(loaded, dict):
            raise ValueError('--mapping: expected a JSON object {"our_field": "their_field"}')
        m.update({str(k): str(v) for k, v in loaded.items()})
    for item in args.map or []:
        if "=" not in item:
            raise ValueError(f"--map {item!r}: expected ours=theirs")
        k, v = item.split("=", 1)
        m[k.strip()] = v.strip()
    return m or None


def _add_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="export file: X API v2/v1.1 JSON(L), Apify JSON, sample JSONL, CSV (.gz ok)")
    p.add_argument("--map", action="append", metavar="OURS=THEIRS", help="column mapping entry (repeatable)")
    p.add_argument("--mapping", help="column mapping as JSON text or a JSON file")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m training.data.cli", description="Reply Arena data pipeline")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("import", help="detect the format, join replies to parents, print the report")
    _add_source(p)
    p.add_argument("--out", help="write normalized pairs as JSONL")

    p = sub.add_parser("funnel", help="import + filters + dedup; print the funnel")
    _add_source(p)
    d = FilterConfig()
    p.add_argument("--min-chars", type=int, default=d.min_reply_chars)
    p.add_argument("--max-chars", type=int, default=d.max_reply_chars)
    p.add_argument("--min-followers", type=int, default=d.min_author_followers)
    p.add_argument("--max-followers", type=int, default=d.max_author_followers)
    p.add_argument("--min-delay", type=int, default=d.min_time_diff_seconds, help="seconds after the tweet")
    p.add_argument("--min-likes", type=int, default=d.min_likes)
    p.add_argument("--languages", default=",".join(d.languages or ()), help="comma list; empty = no language filter")
    p.add_argument("--allow-urls", action="store_true")
    p.add_argument("--allow-media", action="store_true")
    p.add_argument("--no-semantic", action="store_true", help="skip embedding near-duplicate removal")
    p.add_argument("--threshold", type=float, default=None, help="cosine threshold for near duplicates")
    p.add_argument("--cache-dir", help="embedding cache dir (default <data-dir>/embeddings or ./.cache/embeddings)")
    p.add_argument("--plot", help="save the funnel chart (PNG)")
    p.add_argument("--out", help="write the kept pairs as JSONL")
    p.add_argument("--data-dir", help="with --dataset: load the kept pairs into the review store")
    p.add_argument("--dataset", help="review dataset name")
    p.add_argument("--replace", action="store_true", help="replace an existing review dataset")

    p = sub.add_parser("export", help="export kept + edited pairs of a review dataset")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--name", help="export name (default: the dataset name)")
    p.add_argument("--eval-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--include-pending", action="store_true", help="also export pairs nobody reviewed")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("list", help="list review datasets and exports")
    p.add_argument("--data-dir", required=True)
    return ap


def _cmd_import(args: argparse.Namespace) -> dict[str, Any]:
    res = import_file(args.src, _mapping(args))
    out = {"report": res.report.to_dict()}
    if args.out:
        out["written"] = write_pairs_jsonl(res.pairs, args.out)
    return out


def _cmd_funnel(args: argparse.Namespace) -> dict[str, Any]:
    if args.dataset and not args.data_dir:
        raise ValueError("--dataset needs --data-dir")
    res = import_file(args.src, _mapping(args))
    langs = tuple(x.strip() for x in args.languages.split(",") if x.strip())
    cfg = FilterConfig(
        min_reply_chars=args.min_chars,
        max_reply_chars=args.max_chars,
        min_author_followers=args.min_followers,
        max_author_followers=args.max_followers,
        min_time_diff_seconds=args.min_delay,
        min_likes=args.min_likes,
        languages=langs or None,
        exclude_urls=not args.allow_urls,
        exclude_media=not args.allow_media,
    )
    semantic: Any = False
    if not args.no_semantic:
        semantic = SemanticDedupConfig() if args.threshold is None else SemanticDedupConfig(threshold=args.threshold)
    cache_dir = args.cache_dir or (str(Path(args.data_dir) / "embeddings") if args.data_dir else None)
    fr = run_funnel(res.pairs, cfg, semantic=semantic, cache_dir=cache_dir)
    out: dict[str, Any] = {
        "import": res.report.to_dict(),
        "funnel": fr.funnel.to_dict(),
        "filter_config": cfg.to_dict(),
    }
    if semantic:
        out["semantic"] = dataclasses.asdict(semantic)
    if args.plot:
        fr.funnel.plot().savefig(args.plot, dpi=100)
        out["plot"] = args.plot
    if args.out:
        out["written"] = write_pairs_jsonl(fr.kept, args.out)
    if args.dataset:
        meta = {
            "source": str(args.src),
            "format": res.report.format,
            "filter_config": cfg.to_dict(),
            "funnel": fr.funnel.to_dict(),
            "semantic": out.get("semantic"),
        }
        n = ReviewStore(args.data_dir).create_dataset(args.dataset, fr.kept, replace=args.replace, meta=meta)
        out["review_dataset"] = {"name": args.dataset, "pairs": n}
    return out


def _cmd_export(args: argparse.Namespace) -> dict[str, Any]:
    info = export_dataset(
        args.data_dir,
        args.dataset,
        args.name,
        eval_fraction=args.eval_fraction,
        seed=args.seed,
        include_pending=args.include_pending,
        overwrite=args.overwrite,
    )
    return info.to_dict()


def _cmd_list(args: argparse.Namespace) -> dict[str, Any]:
    reviews = ReviewStore(args.data_dir).datasets() if (Path(args.data_dir) / DB_NAME).exists() else []
    return {"review_datasets": reviews, "exports": [e.to_dict() for e in list_exported(args.data_dir)]}


def main(argv: Sequence[str] | None = None) -> int:
    # Offline unless the caller says otherwise, before huggingface_hub is imported (it reads these at import): the
    # semantic dedup's encoder is bundled and needs no Hub (the app sets the same defaults in context.py).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = _parser().parse_args(argv)
    cmd = {"import": _cmd_import, "funnel": _cmd_funnel, "export": _cmd_export, "list": _cmd_list}[args.cmd]
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the JSON (libraries print banners on import)
            result = cmd(args)
    except (ValueError, KeyError, OSError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"error: {msg}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
