"""Read a finished (or running) run's loss log and say what went wrong, with the seed's suggested next config.

Rules (the seed's): overfitting when final eval loss - train loss > 0.3; underfitting when train loss > 1.0 (it then
rules out "overfitting": a model that has not fit its training data is not over-fitting it, so a run gets one verdict);
possible forgetting (memorising the replies) when train loss < 0.1; plateau when eval loss improved by less than the
early-stopping threshold over the last N evaluations. "Train loss" is the mean of the last few logged values,
because a single logged step on a micro-batch is noisy.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .config import TrainConfig
from .rundir import LOG_FILE, read_jsonl

OVERFIT_GAP = 0.3
UNDERFIT_LOSS = 1.0
FORGET_LOSS = 0.1
SMOOTH = 3  # train-loss records averaged for "final train loss"
ORDER = ("overfitting", "forgetting", "underfitting", "plateau")  # on a conflict, the earlier finding's change wins


@dataclass
class Finding:
    kind: str  # overfitting | underfitting | forgetting | plateau
    message: str  # one sentence for the UI
    evidence: dict = field(default_factory=dict)
    changes: dict = field(default_factory=dict)  # config key -> suggested v2 value
    advice: list[str] = field(default_factory=list)  # suggestions with no config key (e.g. more data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_log(log: str | Path | Iterable[dict]) -> list[dict]:
    """A list of records, a trainer_log.jsonl path, or a run folder."""
    if isinstance(log, (str, Path)):
        p = Path(log)
        return read_jsonl(p / LOG_FILE if p.is_dir() else p)
    return [dict(r) for r in log]


def summarize(log: str | Path | Iterable[dict]) -> dict[str, Any]:
    """Final (smoothed) train loss, final / best eval loss and the eval curve, from the JSONL records."""
    recs = load_log(log)
    train = [
        (int(r.get("step") or 0), float(r["loss"]))
        for r in recs
        if r.get("loss") is not None and r.get("event", "train") == "train"
    ]
    evals = [
        (int(r.get("step") or 0), float(r["eval_loss"]))
        for r in recs
        if r.get("eval_loss") is not None and r.get("event", "eval") == "eval"
    ]
    final_eval = [
        float(r["eval_loss"]) for r in recs if r.get("event") == "final_eval" and r.get("eval_loss") is not None
    ]
    tail = [v for _, v in train[-SMOOTH:]]
    best = min(evals, key=lambda e: e[1]) if evals else None
    return {
        "train_loss": sum(tail) / len(tail) if tail else None,
        "first_train_loss": train[0][1] if train else None,
        "eval_loss": final_eval[-1] if final_eval else (evals[-1][1] if evals else None),
        "last_eval_loss": evals[-1][1] if evals else None,
        "best_eval_loss": best[1] if best else None,
        "best_eval_step": best[0] if best else None,
        "evals": evals,
        "steps": max([s for s, _ in train] + [s for s, _ in evals] + [0]),
    }


def _cfg(config: TrainConfig | dict | None) -> TrainConfig:
    if config is None:
        return TrainConfig()
    return config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)


def _fewer_epochs(cfg: TrainConfig) -> dict:
    """One epoch less (min 1); for a step-capped run, the same fraction of max_steps."""
    out: dict[str, Any] = {"epochs": max(1, cfg.epochs - 1)}
    if cfg.max_steps > 0:
        frac = (cfg.epochs - 1) / cfg.epochs if cfg.epochs > 1 else 0.5
        out["max_steps"] = max(1, int(round(cfg.max_steps * frac)))
    return out


def _more_epochs(cfg: TrainConfig) -> dict:
    out: dict[str, Any] = {"epochs": cfg.epochs + 1}
    if cfg.max_steps > 0:
        out["max_steps"] = int(round(cfg.max_steps * (cfg.epochs + 1) / cfg.epochs))
    return out


def _rank(cfg: TrainConfig, new_rank: int) -> dict:
    """Change rank and keep alpha/rank constant, so the change is capacity, not an effective learning-rate jump."""
    return {"rank": new_rank, "alpha": max(1, int(round(cfg.alpha * new_rank / cfg.rank)))}


def diagnose(
    log: str | Path | Iterable[dict],
    config: TrainConfig | dict | None = None,
    plateau_evals: int | None = None,
    threshold: float | None = None,
) -> list[Finding]:
    """Findings for one run; `plateau_evals` / `threshold` default to the config's early-stopping patience /
    threshold."""
    cfg = _cfg(config)
    s = summarize(log)
    n = plateau_evals or max(1, cfg.early_stopping_patience or 3)
    thr = cfg.early_stopping_threshold if threshold is None else threshold
    thr = thr or 0.01
    tr, ev = s["train_loss"], s["eval_loss"]
    out: list[Finding] = []
    underfit = tr is not None and tr > UNDERFIT_LOSS
    if not underfit and tr is not None and ev is not None and ev - tr > OVERFIT_GAP:
        out.append(
            Finding(
                "overfitting",
                f"Overfitting: eval loss {ev:.4g} is {ev - tr:.2f} above train loss {tr:.4g} (more than "
                f"{OVERFIT_GAP}).",
                {"train_loss": tr, "eval_loss": ev, "gap": ev - tr},
                {
                    **_fewer_epochs(cfg),
                    "dropout": round(min(0.5, cfg.dropout + 0.05), 4),
                    **_rank(cfg, max(4, cfg.rank // 2)),
                },
                ["Add more (diverse) training pairs; that is the most reliable fix for overfitting."],
            )
        )
    if tr is not None and tr < FORGET_LOSS:
        out.append(
            Finding(
                "forgetting",
                f"Possible forgetting: train loss {tr:.4g} is below {FORGET_LOSS}, so the adapter is memorising the "
                "replies and may lose general ability.",
                {"train_loss": tr},
                {"learning_rate": cfg.learning_rate / 2, **_fewer_epochs(cfg)},
                ["Compare base and adapter on general tweets in the Arena before keeping this adapter."],
            )
        )
    if underfit:
        gap = (
            f" Eval loss {ev:.4g} is {ev - tr:.2f} higher still: check that the eval split looks like the training "
            "data."
            if ev is not None and ev - tr > OVERFIT_GAP
            else ""
        )
        out.append(
            Finding(
                "underfitting",
                f"Underfitting: train loss is still {tr:.4g} (above {UNDERFIT_LOSS}).{gap}",
                {"train_loss": tr, "eval_loss": ev},
                {"learning_rate": cfg.learning_rate * 1.5, **_more_epochs(cfg), **_rank(cfg, min(256, cfg.rank * 2))},
                ["Check the data: replies that do not follow from their tweets cannot be learned."],
            )
        )
    evals = s["evals"]
    if len(evals) >= n + 1:
        before = evals[-n - 1][1]
        gain = before - min(v for _, v in evals[-n:])
        if gain < thr:
            changes: dict[str, Any] = {"learning_rate": cfg.learning_rate / 2}
            best_step = s["best_eval_step"]
            if best_step and best_step < evals[-1][0]:
                changes["max_steps"] = int(best_step)
            out.append(
                Finding(
                    "plateau",
                    f"Plateau: eval loss improved by {gain:.4f} over the last {n} evaluations (less than {thr}).",
                    {"evals_considered": [v for _, v in evals[-n - 1 :]], "gain": gain, "best_eval_step": best_step},
                    changes,
                    ["Stop earlier (max_steps at the best evaluation) or lower the learning rate."],
                )
            )
    return out


def _next_name(name: str) -> str:
    if not name:
        return ""
    m = re.match(r"^(.*)-v(\d+)$", name)
    return f"{m.group(1)}-v{int(m.group(2)) + 1}" if m else f"{name}-v2"


def suggest_v2(
    config: TrainConfig | dict | None, log: str | Path | Iterable[dict]
) -> tuple[list[Finding], dict[str, Any]]:
    """(findings, v2 config dict). Changes are applied in ORDER; a key already changed by an earlier finding is kept."""
    cfg = _cfg(config)
    findings = diagnose(log, cfg)
    new = cfg.to_dict()
    changed: set[str] = set()
    for f in sorted(findings, key=lambda f: ORDER.index(f.kind)):
        for k, v in f.changes.items():
            if k not in changed:
                new[k] = v
                changed.add(k)
    if findings:
        new["run_name"] = _next_name(cfg.run_name)
    TrainConfig.from_dict(new)  # the suggestion itself must be a valid config
    return findings, new


def compare_runs(runs: Iterable[dict]) -> list[dict]:
    """One row per run for a comparison table: key hyper-parameters, losses, findings; the lowest eval loss is marked
    best.

    Each run is a dict as returned by RunManager.runs() (config, metrics, run_dir, ...), optionally with a "log" list.
    """
    rows: list[dict] = []
    for r in runs:
        cfg = r.get("config") or {}
        cfg = cfg.to_dict() if isinstance(cfg, TrainConfig) else dict(cfg)
        metrics = r.get("metrics") or {}
        log = r.get("log")
        if log is None and r.get("run_dir") and (Path(r["run_dir"]) / LOG_FILE).exists():
            log = load_log(r["run_dir"])
        s = summarize(log or [])
        try:
            kinds = [f.kind for f in diagnose(log or [], cfg)] if log else []
        except ValueError:
            kinds = []
        tr = s["train_loss"] if s["train_loss"] is not None else metrics.get("final_train_loss")
        ev = metrics.get("eval_loss") if metrics.get("eval_loss") is not None else s["eval_loss"]
        rows.append(
            {
                "run": r.get("run_id") or cfg.get("run_name") or "?",
                "state": r.get("state"),
                "base_model": cfg.get("base_model") or "embedded",
                "rank": cfg.get("rank"),
                "alpha": cfg.get("alpha"),
                "dropout": cfg.get("dropout"),
                "lr": cfg.get("learning_rate"),
                "epochs": cfg.get("epochs"),
                "max_steps": cfg.get("max_steps"),
                "steps": metrics.get("global_step") or s["steps"],
                "train_loss": tr,
                "eval_loss": ev,
                "best_eval_loss": metrics.get("best_eval_loss") or s["best_eval_loss"],
                "gap": (ev - tr) if ev is not None and tr is not None else None,
                "findings": ", ".join(kinds),
                "adapter": r.get("adapter_path"),
                "best": False,
            }
        )
    scored = [x for x in rows if x["eval_loss"] is not None]
    if scored:
        min(scored, key=lambda x: x["eval_loss"])["best"] = True
    return rows


VERDICTS = {
    "overfitting": "Overfitting",
    "forgetting": "Memorising (possible forgetting)",
    "underfitting": "Underfitting",
    "plateau": "Plateau",
}


def verdict(findings: list[Finding]) -> str:
    """One headline for the run: the first finding in ORDER (findings never contradict: see diagnose), or "Healthy"."""
    if not findings:
        return "Healthy"
    return VERDICTS[sorted(findings, key=lambda f: ORDER.index(f.kind))[0].kind]


def report(findings: list[Finding], new_config: dict, old_config: TrainConfig | dict | None = None) -> str:
    """Markdown for the Training tab: one verdict, the findings, and the diff between the run's config and the suggested
    v2."""
    if not findings:
        return (
            "**Verdict: Healthy.** No problems found: train and eval loss are close, and eval loss was still improving."
        )
    old = _cfg(old_config).to_dict()
    lines = [f"**Verdict: {verdict(findings)}.**", ""]
    lines += [f"- **{f.kind}**: {f.message}" + "".join(f" {a}" for a in f.advice) for f in findings]
    diff = [f"| {k} | {old.get(k)} | {v} |" for k, v in new_config.items() if old.get(k) != v]
    if diff:
        lines += ["", "Suggested v2 config:", "", "| key | now | v2 |", "|---|---|---|", *diff]
    return "\n".join(lines)
