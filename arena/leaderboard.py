"""The Leaderboard: its view model (table rows, verdicts) and a CLI over stored votes or a Chatbot Arena battles file.

    python -m arena.leaderboard --data-dir data --json
    python -m arena.leaderboard --battles battles.jsonl --json

The statistics live in ``evaluation.ratings.compute_leaderboard``; this module
only loads and validates battles, so the app, the CLI and exported datasets all
rank with the same code. Exit codes: 0 ok, 1 runtime failure, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from arena.lineage import child_vs_parent, lineage_string, preference_runs
from arena.store import DB_FILENAME, WINNER_BY_VOTE, VoteStore
from evaluation.ratings import compute_leaderboard
from generation.variants import friendly_name
from security import inert

ARENA_KEYS: tuple[str, ...] = ("model_a", "model_b", "winner", "len_a", "len_b", "battle_id", "tstamp")
WINNERS: frozenset[str] = frozenset(WINNER_BY_VOTE.values())


class InputError(ValueError):
    """Bad input data (exit code 2); the message names the file and line."""


def load_battles_file(path: Path, include_excluded: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Parse a JSONL battles file. Returns (battles, excluded summary).

    Extra fields are ignored, except ``excluded``: rows exported with excluded=true
    (e.g. replies that reveal the contender) are skipped like in the live store.
    """
    battles: list[dict[str, Any]] = []
    skipped = 0
    by_flag: Counter[str] = Counter()
    try:
        fh = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot open battles file ({exc.strerror or exc})") from exc
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            for key in ("model_a", "model_b"):
                if not isinstance(obj.get(key), str) or not obj[key]:
                    raise InputError(f"{path}:{lineno}: missing or empty {key!r}")
            if obj["model_a"] == obj["model_b"]:
                raise InputError(f"{path}:{lineno}: model_a and model_b are both {obj['model_a']!r}")
            if obj.get("winner") not in WINNERS:
                raise InputError(f"{path}:{lineno}: winner must be one of {sorted(WINNERS)}, got {obj.get('winner')!r}")
            if obj.get("excluded") and not include_excluded:
                skipped += 1
                flags = obj.get("flags") if isinstance(obj.get("flags"), list) else []
                by_flag.update(str(f) for f in flags)
                if not flags:
                    by_flag["unflagged"] += 1
                continue
            battles.append({k: obj[k] for k in ARENA_KEYS if k in obj})
    return battles, {"total": skipped, "by_flag": dict(sorted(by_flag.items()))}


def load_data_dir(data_dir: Path, include_excluded: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Battles from the live vote store plus the excluded-vote counts."""
    if not (data_dir / DB_FILENAME).is_file():
        raise InputError(f"{data_dir}: no {DB_FILENAME} here (nothing has been voted yet?)")
    with VoteStore(data_dir) as store:
        battles = store.battles_for_leaderboard(include_excluded=include_excluded)
        total_excluded = store.count() - store.count(include_excluded=False)
        excluded = {
            "total": total_excluded,
            "by_flag": store.excluded_counts(),
            "included_in_ranking": include_excluded,
        }
    return battles, excluded


# --------------------------------------------------------------------------- #
# View model for the Leaderboard tab (the CLI below prints the same board)
# --------------------------------------------------------------------------- #
def leaderboard(store: VoteStore, include_flagged: bool = False, n_boot: int = 200) -> dict:
    """Straight from the store on every view: no export step between a vote and the leaderboard."""
    board = compute_leaderboard(store.battles_for_leaderboard(include_excluded=include_flagged), n_boot=n_boot, seed=0)
    board["excluded"] = store.excluded_counts()
    board["total_votes"] = store.count(include_excluded=True)
    return board


def verdicts_markdown(board: dict) -> str:
    vs = board.get("verdicts") or []
    if not vs:
        return "_No LoRA adapter has votes yet: train one in the Training tab and let it battle._"
    lines = [
        "| adapter | vs | verdict | improvement | Cohen's h | p | decisive votes |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in vs:
        imp = f"{v['improvement']:+.0%}" if v.get("improvement") is not None else "–"
        h = f"{v['effect_size']:.2f}" if v.get("effect_size") is not None else "–"
        p = f"{v['p_value']:.3g}" if v.get("p_value") is not None else "–"
        lines.append(
            f"| {inert(friendly_name(v['adapter']))} | {inert(friendly_name(v['versus']))} | **{v['verdict']}** "
            f"| {imp} | {h} | {p} | {v.get('decisive', 0)} |"
        )
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    """numpy/pandas scalars -> Python; NaN/inf -> null so the output is strict JSON."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return _jsonable(obj.tolist())
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes, int, float, bool)):
        try:
            return _jsonable(obj.item())
        except (TypeError, ValueError):
            pass
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.1f}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


# Columns shown in the text table (JSON output has everything); unknown sections show all.
TEXT_COLUMNS: dict[str, tuple[str, ...]] = {
    "contenders": (
        "rank",
        "name",
        "rating",
        "ci_low",
        "ci_high",
        "rank_ub",
        "votes",
        "wins",
        "losses",
        "ties",
        "win_rate",
    ),
    "pairs": ("a", "b", "n", "a_wins", "b_wins", "ties", "win_rate_a", "p_value", "p_holm"),
    "verdicts": ("adapter", "versus", "verdict", "improvement", "effect_size", "p_value", "decisive"),
}


def format_table(rows: Iterable[Any], columns: Iterable[str] | None = None) -> str:
    """Plain-text table for a list of dicts (or of scalars); ``columns`` picks/orders keys."""
    rows = list(rows)
    if not rows:
        return "  (none)"
    if not all(isinstance(r, dict) for r in rows):
        return "\n".join(f"  {_fmt(r)}" for r in rows)
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols)
    if columns is not None:
        wanted = [c for c in columns if c in cols]
        cols = wanted or cols
    cells = [[_fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  " + "  ".join(v.ljust(w) for v, w in zip(vals, widths))  # noqa: E731
    out = [line(cols), "  " + "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in cells)
    return "\n".join(out)


def render_text(result: dict[str, Any]) -> str:
    parts: list[str] = [f"Leaderboard ({result.get('source', '')}, {result.get('n_battles', '?')} battles)"]
    for section in ("contenders", "pairs", "verdicts"):
        if section in result:
            parts += ["", section.capitalize() + ":", format_table(result[section] or [], TEXT_COLUMNS.get(section))]
    for v in result.get("verdicts") or []:
        if isinstance(v, dict) and v.get("explanation"):
            parts.append(f"  {v.get('adapter', '')} vs {v.get('versus', '')}: {v['explanation']}")
    excluded = result.get("excluded")
    if excluded:
        parts += [
            "",
            f"Excluded votes: {excluded.get('total', 0)}"
            + (f" by flag: {_fmt(excluded.get('by_flag'))}" if excluded.get("by_flag") else ""),
        ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m arena.leaderboard", description="Rank arena contenders from pairwise votes."
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--data-dir", type=Path, help=f"directory holding {DB_FILENAME}")
    src.add_argument("--battles", type=Path, help="JSONL file in Chatbot Arena battle format")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--n-boot", type=int, default=200, help="bootstrap rounds (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--min-votes", type=int, default=10, help="votes a pair needs before a verdict is given (default 10)"
    )
    parser.add_argument(
        "--include-excluded",
        action="store_true",
        help="also rank votes that were excluded (e.g. replies revealing the contender)",
    )
    args = parser.parse_args(argv)

    try:
        if args.data_dir is not None:
            battles, excluded = load_data_dir(args.data_dir, args.include_excluded)
            source = str(args.data_dir)
        else:
            battles, excluded = load_battles_file(args.battles, args.include_excluded)
            source = str(args.battles)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    try:
        result = dict(compute_leaderboard(battles, n_boot=args.n_boot, seed=args.seed, min_votes=args.min_votes))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["excluded"] = excluded
    result.setdefault("n_battles", len(battles))
    result["source"] = source
    result = _jsonable(result)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2, allow_nan=False))
    else:
        print(render_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def lineage_markdown(store: VoteStore, adapters_dir: Path) -> str:
    """Per adapter trained on votes: its lineage, and its verdict against its parent from votes cast after it was
    trained on tweets it never saw (arena.lineage.child_vs_parent enforces both)."""
    runs = preference_runs(adapters_dir)
    if not runs:
        return ""
    records = list(store.iter_votes(include_excluded=True))
    lines = [
        "",
        "#### Adapters trained on votes",
        "| lineage | vs parent (votes after training, unseen tweets) | verdict |",
        "|---|---|---|",
    ]
    for name, lin in runs:
        try:
            hv = child_vs_parent(records, name, lin)
            verdict = f"**{hv.verdict['verdict']}**"
            used = (
                f"{hv.used} votes ({hv.dropped_before_training} before training and "
                f"{hv.dropped_training_tweet} on training tweets left out)"
            )
        except ValueError as exc:
            verdict, used = "–", inert(str(exc))
        lines.append(f"| {inert(lineage_string(adapters_dir, name))} | {used} | {verdict} |")
    return "\n".join(lines)
