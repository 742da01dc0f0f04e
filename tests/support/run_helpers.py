"""Helpers shared by the tests that start real training subprocesses (runner, multi-process)."""

from __future__ import annotations

import time
from pathlib import Path

from training.config import TrainConfig, resolve
from training.runner import RunManager


def tiny_run_config(tiny_dir: Path, **kw) -> TrainConfig:
    """A fast, learnable run on the tiny Qwen3; keyword arguments override any field."""
    values = dict(
        base_model=str(tiny_dir),
        load_in_4bit=False,
        cpu_dtype="float32",
        rank=8,
        alpha=16,
        learning_rate=1e-2,
        micro_batch_size=4,
        grad_accum=1,
        max_steps=400,
        warmup_ratio=0.0,
        eval_steps=200,
        save_steps=200,
        logging_steps=1,
        early_stopping_patience=0,
    )
    values.update(kw)
    return resolve(None, values)


def wait_for(mgr: RunManager, run_id: str, pred, timeout: float, tail: int = 40):
    """Poll the run's status until `pred(status)` holds; fail with the log tail otherwise."""
    deadline = time.time() + timeout
    st = mgr.status(run_id)
    while time.time() < deadline:
        st = mgr.status(run_id)
        if pred(st):
            return st
        time.sleep(0.3)
    raise AssertionError(f"timed out; last state {st.state} step {st.step}\n{mgr.status(run_id, tail=tail).log_tail}")
