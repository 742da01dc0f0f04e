"""Evaluate's report to W&B: the pair and ranking tables and the report files, in the project training runs use."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from common.tracking import TrackingInfo

try:  # a card package, but the GPU hosts may run without it: then tracking is a note, not a crash
    import wandb
except ImportError:  # pragma: no cover - installed here
    wandb = None

__all__ = ["log_evaluation"]

log = logging.getLogger(__name__)


def log_evaluation(
    project: str,
    name: str,
    summary: dict[str, Any],
    tables: dict[str, tuple[list[str], list[list]]],
    report_dir: str | Path | None = None,
    files: list[str | Path] = (),
    *,
    mode: str,
) -> TrackingInfo:
    """Evaluate's report to the same W&B project (online only: an offline eval report would be one more folder to sync
    by hand; the report folder on disk is already the record). Tables are (columns, rows). ``mode``: the caller's
    ``common.tracking.wandb_mode`` (context.Settings.wandb_mode in the app)."""
    info = TrackingInfo(mode=mode, project=project, run_name=name)
    if mode != "online":
        info.note = "evaluation reports go to W&B only when WANDB_API_KEY is set"
        return info
    try:
        if wandb is None:
            raise ImportError("wandb is not installed (pip install wandb)")
        run = wandb.init(
            project=project,
            name=name,
            job_type="evaluation",
            dir=str(report_dir) if report_dir else None,
            config={"kind": "evaluation"},
            settings=wandb.Settings(silent=True, console="off"),
        )
        for key, (cols, rows) in tables.items():
            run.log({key: wandb.Table(columns=list(cols), data=[list(r) for r in rows])})
        for k, v in summary.items():
            if isinstance(v, (int, float, str, bool)) or v is None:
                run.summary[k] = v
        for f in files:
            if Path(f).is_file():
                run.save(str(f), base_path=str(Path(f).parent), policy="now")
        info.run_id, info.url, info.local_dir = run.id, run.url, str(Path(run.dir).parent)
        run.finish()
    except Exception as exc:  # noqa: BLE001 - a report that cannot reach W&B is still on disk
        info.mode, info.note = "failed", f"{type(exc).__name__}: {str(exc)[:160]}"
        log.warning("W&B evaluation report not sent: %s", info.note)
    return info
