"""W&B settings every tracker shares: which mode a run uses, and what the UI needs to show about it.

Training (training/tracking.py) and Evaluate (evaluation/tracking.py) both log to the same W&B project; this module
holds only what both read, so neither imports the other. It reads no environment: ``wandb_mode`` takes the mapping
(context.Settings passes the app's, a CLI's or the trainer's ``main`` its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DEFAULT_PROJECT", "TrackingInfo", "wandb_mode"]

DEFAULT_PROJECT = "reply-arena"  # WANDB_PROJECT's default; training's wandb_project default too
_MODES = {"online", "offline", "disabled"}


def wandb_mode(env: Mapping[str, str]) -> str:
    """``WANDB_MODE`` if it says online/offline/disabled; otherwise online with an API key, offline without."""
    mode = (env.get("WANDB_MODE") or "").strip().lower()
    if mode == "dryrun":
        mode = "offline"
    if mode in _MODES:
        return mode
    return "online" if (env.get("WANDB_API_KEY") or "").strip() else "offline"


@dataclass
class TrackingInfo:
    mode: str  # online | offline | disabled | failed
    project: str
    run_name: str
    run_id: str | None = None
    url: str | None = None
    local_dir: str | None = None  # the offline-run-... folder
    note: str | None = None

    @property
    def sync_command(self) -> str | None:
        return f"wandb sync {self.local_dir}" if self.mode == "offline" and self.local_dir else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sync_command": self.sync_command}
