"""Trainer callbacks: the JSONL progress log the Training tab polls, status.json, graceful stop, injected failures."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .rundir import LOG_FILE, STATUS_FILE, append_jsonl, read_json, write_json_atomic

# tests: raise inside training at this optimizer step (a realistic crash); read by training.train.Launch.from_env
FAIL_ENV = "REPLY_ARENA_FAIL_AT_STEP"


class StatusFile:
    """status.json, always replaced atomically; only the main process writes it."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.path = Path(run_dir) / STATUS_FILE
        self.enabled = enabled

    def update(self, **values: Any) -> dict:
        if not self.enabled:
            return {}
        cur = read_json(self.path) or {}
        cur.update(values)
        cur["updated_at"] = time.time()
        write_json_atomic(self.path, cur)
        return cur


class StopFlag:
    """Set by SIGTERM/SIGINT; read at each step end. The handler only flips a flag (safe at any point in Python)."""

    def __init__(self):
        self._event = threading.Event()
        self.signal: int | None = None

    def install(self) -> "StopFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum
        self._event.set()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def is_set_anywhere(self, device: Any = None) -> bool:
        """Under DDP every rank must stop at the same step or the next collective hangs: OR the flag across ranks."""
        local = self.is_set()
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                import torch

                t = torch.tensor([1 if local else 0], device=device if device is not None else "cpu")
                dist.all_reduce(t, op=dist.ReduceOp.MAX)
                return bool(t.item())
        except Exception:  # noqa: BLE001 - a failed reduce must not kill training; fall back to the local flag
            pass
        return local


class StopCallback(TrainerCallback):
    """At the next step end after a stop signal: save a checkpoint and end training (the trainer exits 'stopped')."""

    def __init__(self, flag: StopFlag):
        self.flag = flag
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.flag.is_set_anywhere(getattr(args, "device", None)):
            control.should_training_stop = True
            control.should_save = True
            self.stopped_at = state.global_step
        return control


class FailAtStep(TrainerCallback):
    """Raise at a given step, for crash-handling tests (enabled through REPLY_ARENA_FAIL_AT_STEP)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise RuntimeError(f"Injected failure at step {state.global_step} ({FAIL_ENV}).")
        return control


class JsonlLogCallback(TrainerCallback):
    """One JSON object per trainer log event in <run_dir>/trainer_log.jsonl, plus progress in status.json.

    Each record: event (begin/train/eval/summary/final_eval; the trainer appends end), step, max_steps, epoch, loss,
    eval_loss, lr, grad_norm,
    tokens_per_s, elapsed, eta_s, status, time. Elapsed/ETA/throughput cover this session (after a resume, from
    the resume point).
    """

    def __init__(self, run_dir: Path, status: StatusFile, enabled: bool = True, extra_keys: tuple[str, ...] = ()):
        self.path = Path(run_dir) / LOG_FILE
        self.extra_keys = extra_keys  # further log keys copied as-is (DPO: rewards/chosen, rewards/margins, ...)
        self.status = status
        self.enabled = enabled
        self.t0 = time.time()
        self.start_step = 0
        self.tokens0 = 0
        self.last_status_write = 0.0
        self.final = (
            False  # set by the trainer before its closing evaluate(), so that eval is not counted as a periodic one
        )

    def _timing(self, state) -> dict:
        elapsed = time.time() - self.t0
        done = state.global_step - self.start_step
        eta = (elapsed / done) * max(0, state.max_steps - state.global_step) if done > 0 else None
        toks = (state.num_input_tokens_seen or 0) - self.tokens0
        return {
            "elapsed": round(elapsed, 2),
            "eta_s": None if eta is None else round(eta, 1),
            "tokens_per_s": round(toks / elapsed, 1) if elapsed > 0 and toks > 0 else None,
        }

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.time()
        self.start_step = state.global_step
        self.tokens0 = state.num_input_tokens_seen or 0
        if self.enabled:
            append_jsonl(
                self.path,
                {
                    "event": "begin",
                    "step": state.global_step,
                    "max_steps": state.max_steps,
                    "epoch": state.epoch,
                    "status": "running",
                    "time": time.time(),
                    "elapsed": 0.0,
                    "eta_s": None,
                },
            )
            self.status.update(state="running", step=state.global_step, max_steps=state.max_steps)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.enabled and time.time() - self.last_status_write > 1.0:
            self.last_status_write = time.time()
            self.status.update(step=state.global_step, max_steps=state.max_steps, **self._timing(state))
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self.enabled or not logs:
            return control
        logs = dict(logs)
        if "eval_loss" in logs:
            event = "final_eval" if self.final else "eval"
        elif "train_loss" in logs:
            event = "summary"
        elif "loss" in logs:
            event = "train"
        else:
            event = "log"
        rec: dict[str, Any] = {
            "event": event,
            "step": state.global_step,
            "max_steps": state.max_steps,
            "epoch": round(state.epoch, 4) if state.epoch is not None else None,
            "loss": logs.get("loss"),
            "eval_loss": logs.get("eval_loss"),
            "lr": logs.get("learning_rate"),
            "grad_norm": logs.get("grad_norm"),
            "status": "running",
            "time": time.time(),
            **self._timing(state),
        }
        for k in self.extra_keys:
            for name in (k, f"eval_{k}"):
                if name in logs:
                    rec[name] = logs[name]
        if event == "summary":
            rec.update({k: logs[k] for k in ("train_loss", "train_runtime", "train_samples_per_second") if k in logs})
            rec["loss"] = None
        append_jsonl(self.path, rec)
        return control
