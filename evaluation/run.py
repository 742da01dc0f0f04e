"""One evaluation end to end: batch replies -> judge (scores + swapped pairs) -> metrics -> gates -> report -> ledger.

``run_evaluation`` is what the Evaluate tab and the CLI both call. The CLI:

    python -m evaluation.run --adapters NAME... --tweets FILE --judge anthropic|local --out DIR \
        [--base-model ...] [--limit N] [--data-dir D] [--anthropic-base-url URL] [--no-rag] [--judge-model M]

prints the report folder and a short summary. Replies and judge answers are cached under
``<data_dir>/eval_cache/``, so a re-run (or a run resumed after an API failure) only pays for what is new.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from common.jsonio import read_jsonl
from common.tracking import DEFAULT_PROJECT, wandb_mode
from evaluation.tracking import log_evaluation
from generation.errors import ModelLoadError
from generation.variants import BASE, RAG, adapter_name, is_lora, lora_variant

from .batch import EvalItem, ReplyCache, generate_replies, load_items
from .gates import DecisionRule, Weights, decide, phase0, phase4, rank_models, read_eval_loss
from .judge import DEFAULT_MODEL, Judge, JudgeError, JudgeUnavailable, make_judge
from .metrics import (
    judge_vs_human,
    length_controlled_win_rate,
    score_summary,
    score_tests,
    text_metrics,
    win_counts,
    win_rate_stats,
)

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent
HELDOUT = ROOT / "assets" / "heldout_tweets.jsonl"
Progress = Callable[[float, str], None]

__all__ = ["EvalConfig", "run_evaluation", "plan_pairs", "config_hash", "summary_lines", "main"]


@dataclass
class EvalConfig:
    name: str = "eval"
    adapters: list[str] = field(default_factory=list)  # adapter names (without "lora:")
    include_rag: bool = True
    thinking: bool = False
    judge: str = "anthropic"
    judge_model: str = DEFAULT_MODEL
    limit: int | None = None
    weights: Weights = field(default_factory=Weights)
    rule: DecisionRule = field(default_factory=DecisionRule)
    batch_size: int = 8
    workers: int = 4  # parallel judge requests (Claude only; the local judge is serial)
    tweets_source: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["weights"] = self.weights.to_dict()
        d["rule"] = asdict(self.rule)
        return d


def plan_pairs(variants: Sequence[str]) -> list[tuple[str, str]]:
    """Each adapter vs base and vs RAG (Phase 4), and RAG vs base (the RAG gate)."""
    pairs = []
    for v in variants:
        if is_lora(v):
            pairs += [(v, o) for o in (BASE, RAG) if o in variants]
    if RAG in variants and BASE in variants:
        pairs.append((RAG, BASE))
    return pairs


def config_hash(cfg: EvalConfig, model_name: str, items: Sequence[EvalItem], sampling: dict) -> str:
    blob = json.dumps(
        {
            "cfg": {k: v for k, v in cfg.to_dict().items() if k not in ("name", "workers")},
            "model": model_name,
            "sampling": sampling,
            "items": [[it.tweet_id, it.tweet] for it in items],
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _variants(engine, cfg: EvalConfig) -> list[str]:
    available = engine.variants()
    out = ["base"]
    if cfg.include_rag and "rag" in available:
        out.append("rag")
    for a in cfg.adapters:
        v = lora_variant(a)
        if v not in available:
            names = [adapter_name(x) for x in available if is_lora(x)]
            raise ValueError(f"No adapter named {adapter_name(v)!r}; available: {', '.join(names) or 'none'}.")
        if v not in out:
            out.append(v)
    return out


def _parallel(fn, jobs: list, workers: int, progress: Progress | None, lo: float, hi: float, what: str) -> list:
    """Run fn(job) for every job (threads for Claude), results in job order; progress from lo to hi."""
    out: list[Any] = [None] * len(jobs)
    if not jobs:
        return out
    step = max(1, len(jobs) // 50)
    if workers <= 1:
        for i, j in enumerate(jobs):
            out[i] = fn(j)
            if progress and (i % step == 0 or i == len(jobs) - 1):
                progress(lo + (hi - lo) * (i + 1) / len(jobs), f"{what} {i + 1}/{len(jobs)}")
        return out
    with ThreadPoolExecutor(max_workers=workers) as ex:
        futs = {ex.submit(fn, j): i for i, j in enumerate(jobs)}
        done = 0
        try:
            for f in as_completed(futs):
                out[futs[f]] = f.result()
                done += 1
                if progress and (done % step == 0 or done == len(jobs)):
                    progress(lo + (hi - lo) * done / len(jobs), f"{what} {done}/{len(jobs)}")
        except BaseException:
            for f in futs:
                f.cancel()
            raise
    return out


def _limitations(
    cfg: EvalConfig, judge: Judge, n_items: int, n_unparsed: int, eval_loss: dict, result_pairs: list
) -> list[str]:
    lim = [
        f"{n_items} tweets: confidence intervals are wide at this size; treat small differences as noise.",
        "The judge is an LLM: position swapping removes position bias only; verbosity and style preferences remain "
        "(see the length-controlled win rate), and it is not a measure of real engagement.",
        "One sampled reply per tweet and variant (fixed seed); another sample can change individual outcomes.",
        "ROUGE compares with one human reference reply and rewards word overlap, not quality.",
        "The engagement term of the composite is the judge's normalised score, a proxy, not likes or replies.",
    ]
    if judge.weaker:
        lim.insert(
            0,
            "Judged by the LOCAL model, a much weaker judge than Claude: use these numbers for smoke tests, not "
            "decisions.",
        )
    if not judge.temperature_applied:
        lim.append(f"{judge.model} does not accept a temperature; the API default sampling was used instead of 0.3.")
    if n_unparsed:
        lim.append(
            f"{n_unparsed} judge answers could not be parsed; their pairs/scores are left out (raw text is in the JSON "
            "report)."
        )
    missing = [k for k, v in eval_loss.items() if v is None]
    if missing:
        lim.append(
            f"No eval loss for {', '.join(missing)}: the composite score is left empty there (partial score shown)."
        )
    if any(
        (p.get("length_controlled") or {}).get("length_coef") is not None
        and (p["length_controlled"].get("length_coef_p") or 1) < 0.05
        for p in result_pairs
    ):
        lim.append("For at least one pair the judge's preference depends significantly on reply length.")
    extra = [f"{p['a']} vs {p['b']}" for p in result_pairs if (p.get("length_controlled") or {}).get("extrapolated")]
    if extra:
        lim.append(
            f"{', '.join(extra)}: one side is longer in every pair, so the equal-length win rate is an extrapolation."
        )
    lim.append("Costs are approximate (list prices; see the judge section).")
    return lim


def run_evaluation(
    engine,
    items: Sequence[EvalItem],
    cfg: EvalConfig,
    *,
    judge: Judge,
    data_dir: str | Path,
    reports_root: str | Path | None = None,
    adapters_dir: str | Path | None = None,
    data_info: dict | None = None,
    progress: Progress | None = None,
    votes: Sequence = (),
    write_ledger: bool = True,
    wandb_project: str = DEFAULT_PROJECT,
    wandb_mode: str = "offline",
) -> dict[str, Any]:
    """The whole evaluation; returns the JSON-able result (with ``report_dir`` and ``files`` once written).

    ``votes``: human battle records (VoteRecords or exported dicts with tweet, reply_a, reply_b, vote) for the
    judge-vs-human agreement; the caller reads them (the app from its vote store, the CLI from ``--votes``).
    ``wandb_project`` / ``wandb_mode``: WANDB_PROJECT and common.tracking.wandb_mode, read by the caller (the app's
    Settings, the CLI's main); the report goes to W&B only online."""
    from .ledger import Ledger, LedgerRow
    from .report import write_report

    t0 = time.time()
    data_dir = Path(data_dir)
    cache_dir = data_dir / "eval_cache"
    adapters_dir = Path(adapters_dir or getattr(getattr(engine, "bank", None), "adapters_dir", "adapters"))
    if not items:
        raise ValueError("No tweets to evaluate.")
    variants = _variants(engine, cfg)
    pairs = plan_pairs(variants)

    def prog(f: float, msg: str) -> None:
        if progress:
            progress(min(1.0, max(0.0, f)), msg)

    # 1. replies
    prog(0.0, "generating replies")
    batch = generate_replies(
        engine,
        items,
        variants,
        thinking=cfg.thinking,
        cache=ReplyCache(cache_dir),
        batch_size=cfg.batch_size,
        progress=lambda d, n, m: prog(0.4 * d / max(1, n), m),
    )
    workers = cfg.workers if judge.kind != "local" else 1

    # 2. absolute scores
    score_jobs = [(v, i) for v in variants for i in range(len(items))]
    scored = _parallel(
        lambda j: judge.score(items[j[1]].tweet, batch.reply(j[0], j[1])),
        score_jobs,
        workers,
        progress,
        0.4,
        0.6,
        "judge scores",
    )
    scores: dict[str, list] = {v: [None] * len(items) for v in variants}
    score_raw: dict[str, list] = {v: [""] * len(items) for v in variants}
    for (v, i), s in zip(score_jobs, scored):
        scores[v][i], score_raw[v][i] = s.score, s.raw

    # 3. pairwise, both orders
    pair_jobs = [(x, y, i) for (x, y) in pairs for i in range(len(items))]
    judged = _parallel(
        lambda j: judge.compare(items[j[2]].tweet, batch.reply(j[0], j[2]), batch.reply(j[1], j[2])),
        pair_jobs,
        workers,
        progress,
        0.6,
        0.95,
        "judge pairs",
    )
    pj: dict[tuple[str, str], list] = {p: [None] * len(items) for p in pairs}
    for (x, y, i), r in zip(pair_jobs, judged):
        pj[(x, y)][i] = r
    prog(0.95, "statistics")

    # 4. metrics
    refs = [it.references for it in items]
    text = {v: text_metrics([r.reply for r in batch.replies[v]], refs) for v in variants}
    score_stats = {v: score_summary(scores[v]) for v in variants}
    pair_rows = []
    pooled: dict[str, list[float]] = {v: [0.0, 0.0] for v in variants}  # (wins + ties/2, n)
    judged_for_kappa = []
    for x, y in pairs:
        res = pj[(x, y)]
        verdicts = [r.verdict for r in res]
        c = win_counts(verdicts)
        wr = win_rate_stats(c["wins"], c["losses"], c["ties"])
        lx = [len(batch.reply(x, i)) for i in range(len(items))]
        ly = [len(batch.reply(y, i)) for i in range(len(items))]
        parsed = [r for r in res if r.verdict != "unparsed"]
        row = {
            "a": x,
            "b": y,
            **wr,
            "unparsed": c["unparsed"],
            "position_consistency": (sum(r.consistent for r in parsed) / len(parsed)) if parsed else None,
            "length_controlled": length_controlled_win_rate(verdicts, lx, ly),
            "score_tests": score_tests(scores[x], scores[y]),
            "decision": decide(c["wins"], c["losses"], float(c["ties"]), cfg.rule),
        }
        pair_rows.append(row)
        n = c["wins"] + c["losses"] + c["ties"]
        pooled[x][0] += c["wins"] + c["ties"] / 2
        pooled[x][1] += n
        pooled[y][0] += c["losses"] + c["ties"] / 2
        pooled[y][1] += n
        for i, r in enumerate(res):
            judged_for_kappa.append(
                {
                    "tweet": items[i].tweet,
                    "reply_a": batch.reply(x, i),
                    "reply_b": batch.reply(y, i),
                    "verdict": r.verdict,
                }
            )

    # 5. gates
    p0 = phase0(score_stats["base"]["mean"], score_stats["rag"]["mean"] if "rag" in variants else None)
    p4 = [phase4(r["a"], r["b"], r["wins"], r["losses"], r["ties"], cfg.rule) for r in pair_rows if is_lora(r["a"])]
    eval_loss = {v: (read_eval_loss(adapters_dir, adapter_name(v)) if is_lora(v) else None) for v in variants}
    win_rate = {v: (pooled[v][0] / pooled[v][1] if pooled[v][1] else None) for v in variants}
    ranking = rank_models(
        variants,
        {v: score_stats[v]["engagement"] for v in variants},
        win_rate,
        {v: eval_loss[v] for v in variants},
        cfg.weights,
    )

    # 6. judge vs humans
    kappa = judge_vs_human(votes, judged_for_kappa)

    n_unparsed = sum(s["n_unparsed"] for s in score_stats.values()) + sum(r["unparsed"] for r in pair_rows)
    chash = config_hash(cfg, engine.loaded.name, items, batch.settings)
    created = datetime.now(timezone.utc)
    item_rows = []
    for i, it in enumerate(items):
        item_rows.append(
            {
                **it.to_dict(),
                "replies": {v: batch.reply(v, i) for v in variants},
                "scores": {v: scores[v][i] for v in variants},
                "score_raw": {v: score_raw[v][i] for v in variants},
                "pairs": [{"a": x, "b": y, **pj[(x, y)][i].to_dict()} for (x, y) in pairs],
            }
        )
    result: dict[str, Any] = {
        "name": cfg.name,
        "eval_id": uuid.uuid4().hex[:12],
        "created_at": created.isoformat(timespec="seconds"),
        "settings": {
            **cfg.to_dict(),
            "base_model": engine.loaded.name,
            "variants": variants,
            "pairs": [list(p) for p in pairs],
            "sampling": batch.settings,
            "config_hash": chash,
        },
        "data": {
            "source": cfg.tweets_source,
            "n_items": len(items),
            "n_with_reference": sum(1 for it in items if it.references),
            **(data_info or {}),
        },
        "generation": {"n_generated": batch.n_generated, "n_cached": batch.n_cached, "model_calls": batch.model_calls},
        "judge": judge.describe(),
        "text_metrics": text,
        "scores": score_stats,
        "pairs": pair_rows,
        "verdicts": {"phase0": p0, "phase4": p4},
        "ranking": ranking,
        "weights": cfg.weights.to_dict(),
        "judge_vs_human": kappa,
        "items": item_rows,
        "n_unparsed": n_unparsed,
    }
    result["limitations"] = _limitations(
        cfg, judge, len(items), n_unparsed, {v: eval_loss[v] for v in variants if is_lora(v)}, pair_rows
    )
    result["summary"] = summary_lines(result)
    result["seconds"] = round(time.time() - t0, 2)

    # 7. report, 8. ledger
    prog(0.97, "writing the report")
    files = write_report(result, Path(reports_root) if reports_root else data_dir / "reports")
    # The seed's "W&B report": the same tables in the training runs' W&B project, when online (files stay the record).
    wb_tables = {
        "pairs": (
            ["a", "b", "win_rate", "ci_low", "ci_high", "n", "verdict", "p_value"],
            [
                [
                    r["a"],
                    r["b"],
                    r["win_rate"],
                    r["ci_low"],
                    r["ci_high"],
                    r["n"],
                    r["decision"]["verdict"],
                    r["decision"]["p_value"],
                ]
                for r in pair_rows
            ],
        ),
        "ranking": (["contender", "composite"], [[x["contender"], x.get("composite")] for x in ranking]),
    }
    result["wandb"] = log_evaluation(
        wandb_project,
        f"eval-{result['eval_id']}",
        {"n_items": len(items), "judge": judge.model},
        wb_tables,
        files["dir"],
        [files["markdown"], files["json"], files["html"]],
        mode=wandb_mode,
    ).to_dict()
    if write_ledger:
        rows = []
        for r in pair_rows:
            d = r["decision"]
            rows.append(
                LedgerRow(
                    result["eval_id"],
                    cfg.name,
                    r["a"],
                    r["b"],
                    d["verdict"],
                    {
                        "win_rate": r["win_rate"],
                        "ci_low": r["ci_low"],
                        "ci_high": r["ci_high"],
                        "n": r["n"],
                        "wins": r["wins"],
                        "losses": r["losses"],
                        "ties": r["ties"],
                        "p_value": d["p_value"],
                        "improvement": d["improvement"],
                        "effect_size": d["effect_size"],
                        "lc_win_rate": r["length_controlled"].get("win_rate_at_equal_length"),
                        "composite": next((x["composite"] for x in ranking if x["contender"] == r["a"]), None),
                        "judge": judge.model,
                        "n_items": len(items),
                    },
                    str(files["dir"]),
                    chash,
                )
            )
        if not rows:  # no pairwise comparison (base only): still log that an evaluation happened
            rows.append(
                LedgerRow(
                    result["eval_id"],
                    cfg.name,
                    "base",
                    "-",
                    p0["verdict"],
                    {"base_mean": p0["base_mean"], "judge": judge.model},
                    str(files["dir"]),
                    chash,
                )
            )
        led = Ledger(data_dir)
        try:
            led.append(rows)
        finally:
            led.close()
    prog(1.0, "done")
    return result


def _pct(x: float | None) -> str:
    return f"{x:.0%}" if x is not None else "–"


def summary_lines(result: dict) -> list[str]:
    lines = []
    p0 = result["verdicts"]["phase0"]
    lines.append(f"Phase 0: {p0['explanation']}")
    for v in result["verdicts"]["phase4"]:
        lines.append(f"Phase 4 {v['adapter']} vs {v['versus']}: {v['explanation']}")
    for r in result["pairs"]:
        lc = r["length_controlled"].get("win_rate_at_equal_length")
        lines.append(
            f"{r['a']} vs {r['b']}: win rate {_pct(r['win_rate'])} (95% CI {_pct(r['ci_low'])}–{_pct(r['ci_high'])}, "
            f"n={r['n']}, unparsed {r['unparsed']}); at equal length {_pct(lc)}"
        )
    if result.get("ranking"):
        top = result["ranking"][0]
        lines.append(f"Top of the composite ranking: {top['contender']}" + (f" ({top['note']})" if top["note"] else ""))
    u = result["judge"]["usage"]
    cost = u.get("cost_usd")
    lines.append(
        f"Judge {result['judge']['label']}: {u['calls']} calls, {u['cached']} cached, "
        f"{u['input_tokens']}+{u['output_tokens']} tokens, cost {'$%.4f' % cost if cost is not None else 'unknown'}"
    )
    return lines


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #
def _build_engine(a, max_new_tokens: int | None, cache: Path, rag_dataset: Path) -> Any:
    """The model for the CLI; ``max_new_tokens`` / ``cache`` / ``rag_dataset`` are the app's settings of the same name
    (REPLY_ARENA_MAX_NEW_TOKENS, REPLY_ARENA_CACHE, RAG_DATASET), read by ``main``."""
    from generation import Engine, ModelConfig, load_base

    loaded = load_base(
        ModelConfig(
            base_model=a.base_model, device=a.device, adapters_dir=Path(a.adapters_dir), load_in_4bit=a.load_in_4bit
        )
    )
    for w in loaded.warnings:
        print(f"warning: {w}", file=sys.stderr)
    engine = Engine(loaded, Path(a.adapters_dir), max_new_tokens=max_new_tokens)
    if not a.no_rag:
        try:
            from retrieval import build_or_load, get_encoder

            index = build_or_load(rag_dataset, get_encoder(cache / "embeddings"), fallback_dir=cache / "indexes")
            engine.retriever = index.search
        except Exception as exc:  # RAG is optional
            print(
                f"warning: RAG left out, the retrieval index could not be built ({type(exc).__name__}: {exc})",
                file=sys.stderr,
            )
    return engine


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m evaluation.run",
        description="Evaluate base / RAG / LoRA replies with an LLM judge and write a report.",
    )
    p.add_argument(
        "--adapters", nargs="*", default=[], metavar="NAME", help="adapter folder names under --adapters-dir"
    )
    p.add_argument("--tweets", default=str(HELDOUT), help="JSONL/CSV with a `tweet` column (default: the held-out set)")
    p.add_argument("--judge", choices=["anthropic", "local"], default="anthropic")
    p.add_argument("--judge-model", default=DEFAULT_MODEL)
    p.add_argument("--out", default=None, help="reports root (default: <data-dir>/reports)")
    p.add_argument(
        "--base-model", default=os.environ.get("BASE_MODEL", ""), help="hub id or local dir; empty = embedded model"
    )
    p.add_argument("--device", default=os.environ.get("DEVICE", "auto"))
    p.add_argument("--load-in-4bit", action="store_true")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    p.add_argument("--adapters-dir", default=os.environ.get("ADAPTERS_DIR", "adapters"))
    p.add_argument("--anthropic-base-url", default=None, help="Messages API base URL (a proxy or a local test server)")
    p.add_argument("--no-rag", action="store_true", help="leave the RAG variant out")
    p.add_argument("--thinking", action="store_true", help="generate with Qwen3 thinking on")
    p.add_argument("--name", default="eval")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument(
        "--weights", type=float, nargs=3, default=(0.4, 0.3, 0.3), metavar=("ENGAGEMENT", "WIN_RATE", "EVAL_LOSS")
    )
    p.add_argument(
        "--votes", default=None, help="human votes as JSONL (python -m arena.export) for judge-vs-human kappa"
    )
    p.add_argument(
        "--min-votes",
        type=int,
        default=DecisionRule().min_votes,
        help="minimum decisive judgments for a Phase 4 verdict",
    )
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    try:
        items, warnings = load_items(a.tweets, a.limit)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"note: {w}", file=sys.stderr)
    cfg = EvalConfig(
        name=a.name,
        adapters=list(a.adapters),
        include_rag=not a.no_rag,
        thinking=a.thinking,
        judge=a.judge,
        judge_model=a.judge_model,
        limit=a.limit,
        weights=Weights(*a.weights),
        rule=DecisionRule(min_votes=a.min_votes),
        batch_size=a.batch_size,
        workers=a.workers,
        tweets_source=str(a.tweets),
    )
    data_dir = Path(a.data_dir)
    try:
        judge = None
        if a.judge == "anthropic":  # fail on a missing key before loading any model
            judge = make_judge(
                "anthropic",
                model=a.judge_model,
                cache_dir=data_dir / "eval_cache",
                base_url=a.anthropic_base_url,
                api_key=os.environ.get("ANTHROPIC_API_KEY"),
            )
        budget = os.environ.get("REPLY_ARENA_MAX_NEW_TOKENS")
        engine = _build_engine(
            a,
            int(budget) if budget else None,
            Path(os.environ.get("REPLY_ARENA_CACHE", str(ROOT / ".cache"))),
            Path(os.environ.get("RAG_DATASET", str(ROOT / "assets" / "sample_pairs.jsonl"))),
        )
        if judge is None:
            judge = make_judge("local", engine=engine, cache_dir=data_dir / "eval_cache")
        result = run_evaluation(
            engine,
            items,
            cfg,
            judge=judge,
            data_dir=data_dir,
            reports_root=a.out,
            adapters_dir=a.adapters_dir,
            data_info={"warnings": warnings},
            progress=lambda f, m: print(f"[{f:4.0%}] {m}", file=sys.stderr) if m else None,
            votes=read_jsonl(a.votes) if a.votes else (),
            wandb_project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT),
            wandb_mode=wandb_mode(os.environ),
        )
    except (JudgeUnavailable, JudgeError, ValueError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {result['report_dir']}")
    for line in result["summary"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
