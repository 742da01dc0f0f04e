"""Export votes as JSONL (Chatbot Arena battle format + our full records) or CSV.

Files are written atomically (temp file in the same dir, fsync, os.replace) so a
crash or error mid-export never leaves a truncated file where a good one was.

    python -m arena.export --data-dir data --out votes.jsonl [--include-excluded]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, TextIO

from arena.store import COLUMNS, DB_FILENAME, VoteRecord, VoteStore
from common.flags import env_flag
from common.jsonio import atomic_write, write_jsonl

# Column order for CSV: arena fields first, then the rest of the stored record (the votes table's columns).
ARENA_FIELDS: tuple[str, ...] = ("battle_id", "model_a", "model_b", "winner", "len_a", "len_b", "tstamp")
RECORD_FIELDS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in ARENA_FIELDS)
CSV_FIELDS: tuple[str, ...] = ARENA_FIELDS + RECORD_FIELDS


def export_row(record: VoteRecord) -> dict[str, Any]:
    """Arena battle dict plus every stored field (settings as dict, flags as list)."""
    row = record.to_battle()
    row.update(record.to_dict())
    return row


def iter_export_rows(store: VoteStore, include_excluded: bool = False) -> Iterator[dict[str, Any]]:
    for rec in store.iter_votes(include_excluded=include_excluded):
        yield export_row(rec)


def write_csv(rows: Iterable[dict[str, Any]], path: Path | str) -> int:
    """CSV with CSV_FIELDS columns; dict/list values JSON-encoded. Text is not altered,
    so beware spreadsheet formula injection when opening in Excel."""
    n = 0

    def _write(fh: TextIO) -> None:
        nonlocal n
        writer = csv.DictWriter(fh, fieldnames=list(CSV_FIELDS), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            flat = {
                k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list, tuple)) else v)
                for k, v in row.items()
            }
            if isinstance(flat.get("excluded"), bool):
                flat["excluded"] = int(flat["excluded"])
            writer.writerow(flat)
            n += 1

    atomic_write(path, _write, newline="")
    return n


def export_votes(store: VoteStore, out: Path | str, include_excluded: bool = False) -> int:
    """Export to JSONL or CSV depending on the extension of ``out``."""
    out = Path(out)
    suffix = out.suffix.lower()
    rows = iter_export_rows(store, include_excluded=include_excluded)
    if suffix == ".jsonl":
        return write_jsonl(out, rows)
    if suffix == ".csv":
        return write_csv(rows, out)
    raise ValueError(f"Unsupported export format {out.suffix!r}: use a .jsonl or .csv file name.")


def _hub_offline(offline: bool) -> bool:
    if offline:
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.is_offline_mode())
    except (ImportError, AttributeError):
        return False


def push_to_hub(
    path: Path | str,
    repo_id: str,
    token: str | None = None,
    path_in_repo: str | None = None,
    *,
    offline: bool = False,
) -> str:
    """Upload an exported file to a Hub *dataset* repo; returns the commit URL.

    ``token`` / ``offline``: the caller's HF_TOKEN and HF_HUB_OFFLINE (``main`` reads them); without a token,
    huggingface_hub's own login is used. Every failure becomes one RuntimeError/ValueError sentence that says what
    to do.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Cannot push {path}: the file does not exist; export it first.")
    if _hub_offline(offline):
        raise RuntimeError(
            "Cannot push to the Hugging Face Hub because offline mode is on "
            "(HF_HUB_OFFLINE=1); unset HF_HUB_OFFLINE and retry with network access."
        )
    try:
        import huggingface_hub
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError
    except ImportError as exc:
        raise RuntimeError(
            "Cannot push to the Hub: huggingface_hub is not installed; install it with `pip install huggingface_hub`."
        ) from exc
    token = token or huggingface_hub.get_token()
    if not token:
        raise ValueError(
            "Cannot push to the Hub without a token; pass token=..., set HF_TOKEN, or run `hf auth login`."
        )
    try:
        info = HfApi(token=token).upload_file(
            path_or_fileobj=str(path),
            path_in_repo=path_in_repo or path.name,
            repo_id=repo_id,
            repo_type="dataset",
            commit_message=f"Add arena votes export {path.name}",
        )
    except OfflineModeIsEnabled as exc:
        raise RuntimeError(
            "Cannot push to the Hugging Face Hub because offline mode is on; "
            "unset HF_HUB_OFFLINE and retry with network access."
        ) from exc
    except RepositoryNotFoundError as exc:
        raise RuntimeError(
            f"Dataset repo {repo_id!r} was not found or the token cannot write to it; "
            "create it on the Hub (repo type: dataset) and check the token."
        ) from exc
    except HfHubHTTPError as exc:
        raise RuntimeError(
            f"The Hub rejected the upload to {repo_id!r} ({exc.__class__.__name__}); "
            "check the repo id and that the token has write access."
        ) from exc
    except OSError as exc:  # httpx/network errors and connection failures
        raise RuntimeError(
            f"Could not reach the Hugging Face Hub ({exc.__class__.__name__}); check the network connection and retry."
        ) from exc
    return str(getattr(info, "commit_url", info))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m arena.export", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, type=Path, help=f"directory holding {DB_FILENAME}")
    parser.add_argument("--out", required=True, type=Path, help="output file: *.jsonl or *.csv")
    parser.add_argument(
        "--include-excluded",
        action="store_true",
        help="also export votes excluded from the leaderboard (they keep excluded=1)",
    )
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the file to this HF dataset repo")
    args = parser.parse_args(argv)

    if not (args.data_dir / DB_FILENAME).is_file():
        print(f"error: no {DB_FILENAME} in {args.data_dir}", file=sys.stderr)
        return 2
    if args.out.suffix.lower() not in {".jsonl", ".csv"}:
        print(f"error: --out must end in .jsonl or .csv, got {args.out}", file=sys.stderr)
        return 2
    try:
        with VoteStore(args.data_dir) as store:
            n = export_votes(store, args.out, include_excluded=args.include_excluded)
        print(f"wrote {n} votes to {args.out}")
        if args.push_to_hub:
            token, offline = os.environ.get("HF_TOKEN"), env_flag(os.environ.get("HF_HUB_OFFLINE"))
            print(f"pushed: {push_to_hub(args.out, args.push_to_hub, token, offline=offline)}")
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
