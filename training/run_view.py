"""What the Training tab shows and does around a run, UI-free so it is unit-tested: which run the live view follows,
what Stop acts on, when Resume is offered, losses to 4 significant digits, config YAML in and out, and a finished
run's checkpoint promoted to an adapter the Generate and Arena tabs pick up."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from .config import TrainConfig, validate

# The run-folder contract (training/train.py writes checkpoints here; the redesign moves it to training/rundir.py).
# Not imported from train.py, which loads torch and PEFT; tests check the two agree.
CHECKPOINTS = "checkpoints"

NOTHING_RUNNING = "Nothing is running."
RESUMABLE = ("stopped", "failed")  # a run with a checkpoint left mid-way; "completed" starts a new run instead
_ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
_WEIGHTS = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def sig4(x: Any) -> Any:
    """A loss as a person reads it: 4 significant digits (4.121650679906209 -> 4.122); non-numbers unchanged."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return x
    return float(f"{x:.4g}")


def shown_run(pinned: str | None, active: str | None, current: str | None, ids: list[str]) -> str | None:
    """The run the live view shows: the one the admin picked by hand, else the running one, else the current pick,
    else the newest. Start / "Train v2" clear the hand pick, so the view follows the new run."""
    for cand in (pinned, active, current):
        if cand and cand in ids:
            return cand
    return ids[0] if ids else None


def resume_offered(state: str | None, active: str | None) -> bool:
    """Resume only a run that stopped or crashed, and only while nothing else runs (one run at a time)."""
    return state in RESUMABLE and active is None


def live_state(state: str, stop_requested: bool) -> str:
    """The state word on screen: "stopping…" from the Stop click until the process is gone."""
    if state == "stopping" or (state in ("starting", "running") and stop_requested):
        return "stopping…"
    return state


def stop_result(run_id: str, state: str, error: str | None) -> str:
    """After Stop returned: the process is gone; say how the run ended."""
    if state == "stopped":
        return f"Stopped **{run_id}**: the process is gone and a checkpoint was saved; **Resume** continues from it."
    if state == "completed":
        return f"**{run_id}** finished before it could be stopped."
    return f"**{run_id}** is {state}." + (f" {error}" if error else "")


def config_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def load_config_yaml(text: str) -> TrainConfig:
    """A run config from YAML text, checked like a CLI config; one sentence on bad input."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"This file is not valid YAML{where}.") from None
    if not isinstance(data, dict):
        raise ValueError("A run config is a YAML mapping of keys to values (as saved by 'Save config as YAML').")
    for k in ("output_dir", "adapters_dir"):  # where the app puts things is the app's choice, not the file's
        data.pop(k, None)
    cfg = TrainConfig.from_dict(data)
    validate(cfg)
    return cfg


def checkpoint_choices(run_dir: str | Path) -> list[tuple[str, str]]:
    """(label, path) of a run's saved checkpoints that hold adapter weights, newest first."""
    d = Path(run_dir) / CHECKPOINTS
    out = []
    for p in d.glob("checkpoint-*") if d.is_dir() else []:
        step = p.name.rsplit("-", 1)[-1]
        if step.isdigit() and (p / "adapter_config.json").is_file():
            out.append((int(step), p))
    return [(f"step {s}", str(p)) for s, p in sorted(out, reverse=True)]


def promote_checkpoint(
    checkpoint: str | Path, adapters_dir: str | Path, name: str, final_adapter: str | Path | None = None
) -> Path:
    """Copy a checkpoint's adapter into ``adapters_dir/name`` (written aside, then renamed: never half an adapter).

    The run's final adapter, when there is one, gives the base-model name the app matches adapters on and the tokenizer
    and generation files; a checkpoint keeps the local path PEFT saw during training.
    """
    ck = Path(checkpoint)
    if not (ck / "adapter_config.json").is_file():
        raise ValueError(f"{ck.name} holds no adapter weights (no adapter_config.json).")
    if not _ADAPTER_NAME.match(name or ""):
        raise ValueError(
            "An adapter name is letters, digits, '.', '_' or '-' (up to 80), starting with a letter or digit."
        )
    root = Path(adapters_dir)
    dest = root / name
    if dest.exists():
        raise ValueError(f"An adapter named {name} already exists; pick another name.")
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    final = Path(final_adapter) if final_adapter else None
    if final is not None and final.is_dir():
        for f in final.iterdir():
            if f.is_file() and f.name not in _WEIGHTS:
                shutil.copy2(f, tmp / f.name)
    for fn in _WEIGHTS:
        if (ck / fn).is_file():
            shutil.copy2(ck / fn, tmp / fn)
    if final is not None and (final / "adapter_config.json").is_file():
        base = json.loads((final / "adapter_config.json").read_text()).get("base_model_name_or_path")
        cfg = json.loads((tmp / "adapter_config.json").read_text())
        if base:
            cfg["base_model_name_or_path"] = base
            (tmp / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    os.replace(tmp, dest)
    return dest
