"""The run-folder contract between the runner (parent: starts, polls, stops) and the trainer (child: writes).

One run folder ``<output_dir>/<run_id>/`` holds the files named here; the parent only reads what the child writes,
so a refresh or an app restart shows the run again. The lock file sits beside the run folders; the parent passes its
open descriptor to the child in ``LOCK_FD_ENV``. The trainer, its callbacks and the diagnostics import this module,
never the runner. Standard library only.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from common.jsonio import append_jsonl, read_jsonl  # the run log is JSONL like every other log here

__all__ = [
    "STATUS_FILE",
    "LOG_FILE",
    "TRAIN_LOG",
    "CONFIG_FILE",
    "METRICS_FILE",
    "LOCK_FILE",
    "LOCK_FD_ENV",
    "ACTIVE",
    "TERMINAL",
    "write_json_atomic",
    "read_json",
    "append_jsonl",
    "read_jsonl",
]

STATUS_FILE = "status.json"
LOG_FILE = "trainer_log.jsonl"
TRAIN_LOG = "train.log"  # the child's stdout and stderr (never a pipe)
CONFIG_FILE = "run.yaml"
METRICS_FILE = "metrics.json"  # final metrics, written once at the end
LOCK_FILE = ".lock"
LOCK_FD_ENV = "REPLY_ARENA_LOCK_FD"
ACTIVE = ("starting", "running", "stopping")
TERMINAL = ("completed", "stopped", "failed")


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write to a temp file and rename, so a reader never sees half a JSON document."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def read_json(path: str | Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
