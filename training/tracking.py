"""Experiment tracking with Weights & Biases: one W&B run per training run, with the config, the dataset hash,
losses, eval loss, tokens/s and GPU memory; offline (``WANDB_MODE=offline``, files under ``<run_dir>/wandb``) unless
``WANDB_API_KEY`` is set. ``trainer_log.jsonl`` stays the Training tab's source of truth; W&B is the shareable copy.

Why our own callback and not ``report_to="wandb"``: the built-in one logs what the Trainer knows, not the dataset hash,
the data counts, tokens/s of this session or where the run lives; and the tab needs that place (URL or the local folder
plus the ``wandb sync`` command), which this module writes to ``<run_dir>/tracking.json`` for the UI.
A tracking failure (no network, bad key) is a warning in the log, never a failed training run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from common.jsonio import atomic_write
from common.tracking import TrackingInfo, wandb_mode
from security import inert

try:  # a card package, but the GPU hosts may run without it: then tracking is a note, not a crash
    import wandb
except ImportError:  # pragma: no cover - installed here
    wandb = None

__all__ = [
    "TRACKING_FILE",
    "TrackingInfo",
    "WandbTracker",
    "read_tracking",
    "tracking_markdown",
    "wandb_mode",
]

log = logging.getLogger(__name__)
TRACKING_FILE = "tracking.json"


def read_tracking(run_dir: str | Path | None) -> TrackingInfo | None:
    if not run_dir:
        return None
    try:
        d = json.loads((Path(run_dir) / TRACKING_FILE).read_text(encoding="utf-8"))
        d.pop("sync_command", None)
        return TrackingInfo(**d)
    except (OSError, ValueError, TypeError):
        return None


def _code(text: str | None) -> str:
    return "`" + (text or "").replace("`", "'") + "`"  # a code span shows everything else literally


def tracking_markdown(info: TrackingInfo | None) -> str:
    """One line for the Training tab: the run's W&B link, or the local folder and how to upload it."""
    if info is None:
        return "W&B: no tracking record for this run (it started before tracking existed, or is still loading)."
    if info.mode == "online" and info.url and info.url.startswith("https://"):
        return f"W&B: [{inert(info.run_name)}]({info.url.replace(')', '%29')}) in project {_code(info.project)}."
    if info.mode == "offline":
        return (
            f"W&B (offline): the run is in {_code(info.local_dir)}; upload it with {_code(info.sync_command)} "
            "after `wandb login` (or set WANDB_API_KEY before training to log online)."
        )
    if info.mode == "disabled":
        return "W&B: disabled (WANDB_MODE=disabled); the local log below is the only record."
    return f"W&B: not tracked ({inert(info.note or 'wandb could not start')}); the local log below is complete."


def _gpu_memory() -> dict[str, float]:
    torch = sys.modules.get("torch")  # the trainer has loaded it; the UI reading tracking.json need not
    try:
        if torch is not None and torch.cuda.is_available():
            return {
                "gpu/max_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
                "gpu/max_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3),
            }
    except Exception:  # noqa: BLE001 - a memory probe must not break a log call
        pass
    return {}


def _run_id(name: str, run_dir: Path) -> str:
    """Stable for one run folder (a resumed run continues its W&B run), distinct across folders and machines, so two
    runs that share a name never write into one W&B run."""
    salt = hashlib.sha1(f"{socket.gethostname()}:{Path(run_dir).resolve()}".encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '-', name)[:48] or 'run'}-{salt}"


class WandbTracker(TrainerCallback):
    """Starts the W&B run at train begin, logs every trainer log event, finishes with the final metrics."""

    def __init__(
        self,
        run_dir: str | Path,
        project: str | None,
        run_name: str,
        config: dict[str, Any],
        data_info: dict[str, Any] | None = None,
        enabled: bool = True,
        *,
        mode: str,
    ) -> None:
        """``mode``: common.tracking.wandb_mode of the trainer process's environment (its ``main`` reads it)."""
        self.run_dir = Path(run_dir)
        self.project = project or ""
        self.run_name = run_name
        self.config = dict(config)
        self.data_info = dict(data_info or {})
        self.enabled = enabled and bool(self.project)
        self.run = None
        self.t0 = time.time()
        self.tokens0 = 0
        self.info = TrackingInfo(
            mode=mode if self.project else "disabled",
            project=self.project,
            run_name=run_name,
            note=None if self.project else "no wandb_project in the config",
        )

    def start(self) -> TrackingInfo:
        """Create the W&B run (idempotent). Writes tracking.json either way, so the tab can say what happened."""
        if self.run is not None or not self.enabled:
            self._write()
            return self.info
        if self.info.mode != "disabled":
            try:
                if wandb is None:
                    raise ImportError("wandb is not installed (pip install wandb)")
                self.run = wandb.init(
                    project=self.project,
                    name=self.run_name,
                    id=_run_id(self.run_name, self.run_dir),
                    resume="allow",
                    dir=str(self.run_dir),
                    mode=self.info.mode,
                    job_type="train",
                    config={**self.config, "dataset": self.data_info},
                    settings=wandb.Settings(silent=True, console="off"),
                )
                self.run.summary["dataset_sha256"] = self.data_info.get("sha256")
                self.info.run_id = self.run.id
                self.info.url = self.run.url if self.info.mode == "online" else None
                self.info.local_dir = str(Path(self.run.dir).parent)
            except Exception as exc:  # noqa: BLE001 - no network, bad key, broken install: train anyway
                log.warning(
                    "W&B tracking is off for this run: %s",
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
                )
                self.info.mode, self.info.note, self.run = "failed", f"{type(exc).__name__}: {str(exc)[:160]}", None
        self._write()
        return self.info

    def _write(self) -> None:
        if not self.enabled:
            return
        data = json.dumps(self.info.to_dict(), indent=1)
        atomic_write(self.run_dir / TRACKING_FILE, lambda fh: fh.write(data))

    def log(self, values: dict[str, Any], step: int | None = None) -> None:
        if self.run is None:
            return
        clean = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if clean:
            self.run.log(clean, step=step)

    # ---- TrainerCallback
    def on_train_begin(self, args, state, control, **kwargs):
        self.start()
        self.t0 = time.time()
        self.tokens0 = state.num_input_tokens_seen or 0
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.run is None or not logs:
            return control
        out: dict[str, Any] = {}
        for k, v in logs.items():
            if k.startswith("eval_"):
                out[f"eval/{k[5:]}"] = v
            elif k in ("loss", "learning_rate", "grad_norm", "epoch", "train_loss", "train_runtime"):
                out[f"train/{k}"] = v
        elapsed = time.time() - self.t0
        toks = (state.num_input_tokens_seen or 0) - self.tokens0
        if elapsed > 0 and toks > 0:
            out["train/tokens_per_s"] = toks / elapsed
            out["train/tokens_seen"] = state.num_input_tokens_seen
        out.update(_gpu_memory())
        self.log(out, step=state.global_step)
        return control

    def finish(self, metrics: dict[str, Any] | None = None, state: str = "completed") -> TrackingInfo:
        """Final metrics into the run summary, then close it (the offline files are complete after this)."""
        if self.run is not None:
            try:
                for k, v in (metrics or {}).items():
                    if isinstance(v, (int, float, str, bool)) or v is None:
                        self.run.summary[k] = v
                self.run.summary["state"] = state
                self.run.finish(exit_code=0 if state in ("completed", "stopped") else 1)
            except Exception as exc:  # noqa: BLE001
                log.warning("W&B finish failed: %s", exc)
            self.run = None
        return self.info
