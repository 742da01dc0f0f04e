"""Background runs: real subprocesses on a tiny Qwen3 — progress, one-at-a-time lock, stop, resume, crashes."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.support.run_helpers import tiny_run_config
from tests.support.run_helpers import wait_for as _wait_for
from tests.support.tiny_qwen3 import save_tiny_qwen3
from training.runner import RunError, RunManager, pid_alive

WAIT = 120  # generous: the box may be shared with other test runs


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3-runner"), init_std=0.2)


def run_config(tiny_dir: Path, **kw):
    return tiny_run_config(tiny_dir, **kw)


def wait_for(mgr: RunManager, run_id: str, pred, timeout: float = WAIT):
    return _wait_for(mgr, run_id, pred, timeout, tail=40)


def test_start_progress_lock_stop_resume(tiny_dir, tmp_path):
    mgr = RunManager(tmp_path / "data", tmp_path / "adapters")
    h = mgr.start(run_config(tiny_dir, run_name="bg"))
    assert h.run_id == "bg" and (h.run_dir / "run.yaml").is_file() and h.log_path.name == "train.log"

    st = wait_for(mgr, "bg", lambda s: s.state == "running" and s.step >= 3)
    assert 0 < st.progress < 1 and st.max_steps == 400 and st.last["loss"] is not None and st.active
    assert st.eta_s is not None and st.eta_s > 0 and st.history and st.log_tail
    assert mgr.active_run() == "bg"

    with pytest.raises(RunError, match="bg is already running"):  # one run at a time
        mgr.start(run_config(tiny_dir, run_name="second"))
    assert not (tmp_path / "data" / "runs" / "second").exists()

    st = mgr.stop("bg", timeout=60)
    assert st.state == "stopped" and not st.active
    assert not pid_alive(h.pid)  # the process is gone (its GPU memory with it)
    stopped_at = st.step
    assert 3 <= stopped_at < 400
    assert (h.run_dir / "checkpoints" / f"checkpoint-{stopped_at}" / "trainer_state.json").is_file()
    assert mgr.active_run() is None  # the kernel released the child's lock

    with pytest.raises(RunError, match="max_seq_len cannot change"):
        mgr.resume("bg", overrides={"max_seq_len": 128})
    mgr.resume("bg", overrides={"max_steps": stopped_at + 4})
    st = wait_for(mgr, "bg", lambda s: not s.active)
    assert st.state == "completed", st.error
    assert st.metrics["global_step"] == stopped_at + 4 and st.progress == 1.0
    begins = [r["step"] for r in st.history if r["event"] == "begin"]
    assert begins == [0, stopped_at]  # continued from the checkpoint, not from scratch
    assert Path(st.adapter_path, "adapter_config.json").is_file()

    runs = mgr.runs()
    assert [r["run_id"] for r in runs] == ["bg"]
    r = runs[0]
    assert (
        r["state"] == "completed"
        and r["adapter_path"] == st.adapter_path
        and r["config"]["max_steps"] == stopped_at + 4
    )
    assert r["metrics"]["eval_loss"] is not None
    assert Path(r["wandb_dir"]).name.startswith("offline-run-") and Path(r["wandb_dir"]).is_dir()  # WANDB_MODE=offline
    with sqlite3.connect(tmp_path / "data" / "runs.sqlite3") as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_injected_failure_shows_failed_error_and_log_tail(tiny_dir, tmp_path):
    mgr = RunManager(tmp_path / "data", tmp_path / "adapters")
    h = mgr.start(run_config(tiny_dir, run_name="crash"), env={"REPLY_ARENA_FAIL_AT_STEP": "2"})
    st = wait_for(mgr, h.run_id, lambda s: not s.active)
    assert st.state == "failed" and "Injected failure at step 2" in st.error
    assert st.log_tail.rstrip().endswith("ERROR: RuntimeError: Injected failure at step 2 (REPLY_ARENA_FAIL_AT_STEP).")
    assert "Traceback" in mgr.status(h.run_id, tail=200).log_tail
    assert st.adapter_path is None
    deadline = time.time() + 15
    while mgr.active_run() is not None and time.time() < deadline:  # the lock goes with the process
        time.sleep(0.1)
    assert mgr.active_run() is None
    assert {r["run_id"]: r["error"] for r in mgr.runs()}["crash"] == st.error


def test_killed_process_is_reported_failed_with_log(tiny_dir, tmp_path):
    mgr = RunManager(tmp_path / "data", tmp_path / "adapters")
    h = mgr.start(run_config(tiny_dir, run_name="killed"))
    wait_for(mgr, h.run_id, lambda s: s.state == "running" and s.step >= 1)
    os.killpg(h.pid, signal.SIGKILL)  # an OOM kill or a crash of the interpreter: no chance to write status
    st = wait_for(mgr, h.run_id, lambda s: not s.active, timeout=30)
    assert st.state == "failed" and "ended unexpectedly" in st.error and "signal 9" in st.error
    assert st.log_tail
    # a fresh manager (an app restart) sees the same state from the files and the registry
    again = RunManager(tmp_path / "data", tmp_path / "adapters").status(h.run_id)
    assert again.state == "failed" and again.error == st.error


def test_bad_config_and_unknown_run_are_refused(tiny_dir, tmp_path):
    mgr = RunManager(tmp_path / "data", tmp_path / "adapters")
    with pytest.raises(ValueError, match="rank must be a positive"):
        mgr.start({"base_model": str(tiny_dir), "rank": 0})
    with pytest.raises(ValueError, match="Unknown config key"):
        mgr.start({"base_model": str(tiny_dir), "ranks": 4})
    with pytest.raises(RunError, match="No training run named"):
        mgr.status("nope")
    assert mgr.runs() == [] and mgr.active_run() is None
