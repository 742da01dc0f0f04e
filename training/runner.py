"""Background training runs for the Training tab: start, watch, stop, list. UI-free and torch-free.

Each run is a subprocess (`python -m training.train --config <run_dir>/run.yaml --run-dir <run_dir>`, or with several
GPUs `accelerate launch` of it, one process per GPU: training/launch.py builds the command) in its own session, writing
status.json, trainer_log.jsonl and train.log into its run folder (rank 0 alone writes them). All state lives in those
files
and in a SQLite registry, so a browser refresh or an app restart shows the run again: refresh = call status() again.
One run at a time: an flock on `<data_dir>/runs/.lock` is taken here and inherited by the child, so the kernel
releases it when the child (and anything it spawned) exits, even after a crash or SIGKILL; no stale lock to clean.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import sqlite

from .config import TrainConfig, validate
from .launch import check_gpus, launch_spec
from .rundir import (
    ACTIVE,
    CONFIG_FILE,
    LOCK_FD_ENV,
    LOCK_FILE,
    LOG_FILE,
    STATUS_FILE,
    TERMINAL,
    TRAIN_LOG,
    read_json,
    read_jsonl,
    write_json_atomic,
)

ROOT = Path(__file__).resolve().parent.parent

_RESUME_FIXED = {
    "base_model",
    "rank",
    "alpha",
    "target_modules",
    "layers_to_transform",
    "load_in_4bit",
    "run_name",
    "dataset",
    "max_seq_len",
    "micro_batch_size",
    "grad_accum",
    "output_dir",
    "adapters_dir",
    "distributed",
}


class RunError(RuntimeError):
    """A run could not be started / found / stopped; the message is one sentence for the UI."""


def tail_lines(path: str | Path, n: int = 20, max_bytes: int = 64_000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    # tqdm redraws with \r: keep only the last state of each line
    lines = [ln.split("\r")[-1] for ln in data.splitlines()]
    return "\n".join(lines[-n:]) if n > 0 else ""


def pid_alive(pid: int | None) -> bool:
    """True while `pid` is a live (non-zombie) training process; guards against pid reuse via /proc cmdline."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            stat = (proc / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                return False
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            return (
                b"training.train" in cmd
                or b"training.dpo" in cmd
                or b"torch.distributed.run" in cmd
                or b"accelerate.commands.launch" in cmd
            )
        except (OSError, IndexError):
            return False
    return True


# ---- result types ----------------------------------------------------------------------------------------------
@dataclass
class RunHandle:
    run_id: str
    run_dir: Path
    pid: int
    log_path: Path
    config: TrainConfig


@dataclass
class RunStatus:
    run_id: str
    state: str  # starting | running | stopping | completed | stopped | failed | unknown
    run_dir: str
    phase: str | None = (
        None  # what the child is doing: loading data / loading model / formatting / training / saving adapter
    )
    pid: int | None = None
    step: int = 0
    max_steps: int = 0
    progress: float = 0.0  # 0..1
    eta_s: float | None = None
    elapsed_s: float | None = None
    last: dict = field(default_factory=dict)  # latest loss, eval_loss, lr, epoch, tokens_per_s
    history: list[dict] = field(default_factory=list)  # every trainer_log.jsonl record (loss curves)
    error: str | None = None
    adapter_path: str | None = None
    metrics: dict = field(default_factory=dict)  # final metrics once completed
    warnings: list[str] = field(default_factory=list)
    log_tail: str = ""
    wandb_dir: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["active"] = self.active
        return d


# ---- registry --------------------------------------------------------------------------------------------------
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    run_dir TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER,
    config_json TEXT NOT NULL,
    metrics_json TEXT,
    adapter_path TEXT,
    wandb_dir TEXT,
    error TEXT,
    stop_requested INTEGER NOT NULL DEFAULT 0
);
"""


class Registry:
    """Run history in SQLite (WAL, one short transaction per write) so several app workers can read it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return sqlite.connect(self.path)

    def upsert(self, run_id: str, **values: Any) -> None:
        values = {
            k: (
                json.dumps(v, default=str)
                if k in ("config_json", "metrics_json") and not isinstance(v, str) and v is not None
                else v
            )
            for k, v in values.items()
        }
        now = time.time()
        c = self._conn()
        try:
            c.execute("BEGIN IMMEDIATE")
            exists = c.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if exists:
                if values:
                    cols = ", ".join(f"{k}=?" for k in values)
                    c.execute(f"UPDATE runs SET {cols}, updated_at=? WHERE run_id=?", (*values.values(), now, run_id))
            else:
                values.setdefault("created_at", now)
                values.setdefault("state", "starting")
                values.setdefault("config_json", "{}")
                values.setdefault("run_dir", "")
                cols = ", ".join(["run_id", "updated_at", *values])
                marks = ", ".join("?" for _ in range(len(values) + 2))
                c.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", (run_id, now, *values.values()))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        finally:
            c.close()

    def get(self, run_id: str) -> dict | None:
        c = self._conn()
        try:
            row = c.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        finally:
            c.close()
        return dict(row) if row else None

    def all(self) -> list[dict]:
        c = self._conn()
        try:
            return [dict(r) for r in c.execute("SELECT * FROM runs ORDER BY created_at DESC")]
        finally:
            c.close()


# ---- the manager -----------------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text.rsplit("/", 1)[-1]).strip("-.").lower()
    return s[:40] or "run"


class RunManager:
    """Starts training subprocesses and reads their state back from files; safe to recreate at any time."""

    def __init__(self, data_dir: str | Path, adapters_dir: str | Path = "adapters", python: str | None = None):
        self.data_dir = Path(data_dir).resolve()
        self.runs_dir = self.data_dir / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.adapters_dir = Path(adapters_dir).resolve()
        self.lock_path = self.runs_dir / LOCK_FILE
        self.registry = Registry(self.data_dir / "runs.sqlite3")
        self.python = python or sys.executable
        self._procs: dict[str, subprocess.Popen] = {}
        self._mutex = threading.Lock()

    # -- locking --
    def active_run(self) -> str | None:
        """The id of the run holding the lock, or None when no run is active."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.lseek(fd, 0, os.SEEK_SET)
                return os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def _take_lock(self, run_id: str, grace_s: float = 10.0) -> int:
        """Take the one-run lock; a holder whose status is already final is given `grace_s` to finish exiting."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + grace_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                st = read_json(self.runs_dir / holder / STATUS_FILE) if holder and "/" not in holder else None
                if st and st.get("state") in TERMINAL and time.monotonic() < deadline:
                    time.sleep(0.1)
                    continue
                os.close(fd)
                raise RunError(
                    f"Training run {holder or 'another run'} is already running; stop it or wait for it to finish "
                    "before starting another."
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, run_id.encode(), 0)
        return fd

    # -- start / resume --
    def _new_run_id(self, cfg: TrainConfig) -> str:
        if cfg.run_name:
            base = cfg.run_name
        else:
            model = _slug(cfg.base_model) if cfg.base_model else "smollm2-135m"
            base = f"{model}-r{cfg.rank}-{time.strftime('%Y%m%d-%H%M%S')}"
        rid, n = base, 2
        while (self.runs_dir / rid).exists() or (self.adapters_dir / rid).exists() or self.registry.get(rid):
            rid, n = f"{base}-{n}", n + 1
        return rid

    def start(self, config: TrainConfig | dict, env: dict[str, str] | None = None) -> RunHandle:
        """Validate, write run.yaml, launch the child. Raises ValueError for a bad config, RunError if a run is
        active."""
        cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
        warnings = validate(cfg)
        check_gpus(cfg)  # more GPUs than this host shows: refused before a run folder exists
        with self._mutex:
            self._reap()
            run_id = self._new_run_id(cfg)
            fd = self._take_lock(run_id)
            try:
                run_dir = self.runs_dir / run_id
                run_dir.mkdir(parents=True)
                cfg = TrainConfig.from_dict(
                    {
                        "run_name": run_id,
                        "output_dir": str(self.runs_dir),
                        "adapters_dir": str(self.adapters_dir),
                        "dataset": str(Path(cfg.dataset).expanduser().resolve()) if cfg.dataset else "",
                        "cache_dir": str(Path(cfg.cache_dir).expanduser().resolve()),
                        "base_model": _abs_if_local(cfg.base_model),
                    },
                    base=cfg,
                )
                cfg.to_yaml(run_dir / CONFIG_FILE)
                write_json_atomic(
                    run_dir / STATUS_FILE,
                    {
                        "run_id": run_id,
                        "state": "starting",
                        "pid": None,
                        "run_dir": str(run_dir),
                        "started_at": time.time(),
                        "warnings": warnings,
                    },
                )
                self.registry.upsert(
                    run_id, run_dir=str(run_dir), state="starting", config_json=cfg.to_dict(), created_at=time.time()
                )
                proc = self._launch(run_id, run_dir, cfg, fd, resume=False, env=env)
            finally:
                os.close(fd)  # the child holds its inherited copy of the lock
        return RunHandle(run_id, run_dir, proc.pid, run_dir / TRAIN_LOG, cfg)

    def resume(
        self, run_id: str, overrides: dict[str, Any] | None = None, env: dict[str, str] | None = None
    ) -> RunHandle:
        """Continue a stopped or crashed run from its last checkpoint in the same folder.

        `overrides` may change schedule keys (e.g. max_steps to train longer); the model and LoRA shape must stay.
        """
        run_dir = self._run_dir(run_id)
        st = self.status(run_id, tail=0)
        if st.active:
            raise RunError(f"Run {run_id} is still {st.state}; stop it before resuming.")
        if st.state == "completed":
            raise RunError(f"Run {run_id} already completed; start a new run to train further.")
        cfg = TrainConfig.from_yaml(run_dir / CONFIG_FILE)
        if overrides:
            fixed = sorted(k for k in overrides if k in _RESUME_FIXED and overrides[k] != getattr(cfg, k))
            if fixed:
                raise RunError(
                    f"{', '.join(fixed)} cannot change on resume (the checkpoint was trained with them); start a new "
                    "run instead."
                )
            cfg = TrainConfig.from_dict(overrides, base=cfg)
            validate(cfg)
            check_gpus(cfg)
            cfg.to_yaml(run_dir / CONFIG_FILE)
            self.registry.upsert(run_id, config_json=cfg.to_dict())
        with self._mutex:
            self._reap()
            fd = self._take_lock(run_id)
            try:
                prev = read_json(run_dir / STATUS_FILE) or {}
                write_json_atomic(
                    run_dir / STATUS_FILE, {**prev, "state": "starting", "pid": None, "error": None, "resuming": True}
                )
                self.registry.upsert(run_id, state="starting", error=None, stop_requested=0)
                proc = self._launch(run_id, run_dir, cfg, fd, resume=True, env=env)
            finally:
                os.close(fd)
        return RunHandle(run_id, run_dir, proc.pid, run_dir / TRAIN_LOG, cfg)

    def _launch(
        self, run_id: str, run_dir: Path, cfg: TrainConfig, fd: int, resume: bool, env: dict[str, str] | None
    ) -> subprocess.Popen:
        child_env = {**os.environ, **(env or {})}  # the trainer inherits the server's environment (CUDA, HF, W&B)
        child_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [child_env.get("PYTHONPATH")])])
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env[LOCK_FD_ENV] = str(fd)
        # 1 GPU / CPU: python -m training.train; several GPUs: accelerate launch, one process per GPU
        # (training/launch.py)
        cmd, extra = launch_spec(cfg, run_dir, self.python, resume, env=child_env)
        child_env.update(extra)
        with open(run_dir / TRAIN_LOG, "ab") as log:
            log.write(
                (
                    f"\n=== {'resume' if resume else 'start'} {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n"
                ).encode()
            )
            log.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=str(ROOT),
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(fd,),
                close_fds=True,
            )
        self._procs[run_id] = proc
        self.registry.upsert(run_id, pid=proc.pid)
        return proc

    # -- status --
    def _run_dir(self, run_id: str) -> Path:
        row = self.registry.get(run_id)
        d = Path(row["run_dir"]) if row and row.get("run_dir") else self.runs_dir / run_id
        if not d.is_dir():
            raise RunError(f"No training run named {run_id!r}.")
        return d

    def _reap(self) -> None:
        for p in list(self._procs.values()):
            p.poll()

    def _exit_code(self, run_id: str) -> int | None:
        p = self._procs.get(run_id)
        return p.poll() if p is not None else None

    def _alive(self, run_id: str, pid: int | None) -> bool:
        p = self._procs.get(run_id)
        if p is not None and (pid is None or p.pid == pid):
            return p.poll() is None
        return pid_alive(pid)

    def status(self, run_id: str, tail: int = 20) -> RunStatus:
        """Current state from the run's files. A dead process without a final state is reported as failed."""
        run_dir = self._run_dir(run_id)
        st = read_json(run_dir / STATUS_FILE) or {"state": "unknown"}
        row = self.registry.get(run_id) or {}
        events = read_jsonl(run_dir / LOG_FILE)
        state = st.get("state", "unknown")
        pid = row.get("pid") or st.get("pid")  # the launched process = the process-group leader
        if state in ACTIVE and not self._alive(run_id, pid):
            time.sleep(0.05)  # the child may have written its final status a moment ago
            st = read_json(run_dir / STATUS_FILE) or st
            state = st.get("state", state)
            if state in ACTIVE:
                rc = self._exit_code(run_id)
                if row.get("stop_requested"):
                    state, err = "stopped", st.get("error") or "Stopped before a checkpoint could be written."
                else:
                    how = (
                        f"exit code {rc}"
                        if rc is not None and rc >= 0
                        else (f"signal {-rc}" if rc is not None else "no exit status")
                    )
                    state, err = (
                        "failed",
                        st.get("error") or f"The training process ended unexpectedly ({how}); see the log below.",
                    )
                st = {**st, "state": state, "error": err, "finished_at": time.time()}
                write_json_atomic(run_dir / STATUS_FILE, st)
        train = [e for e in events if e.get("loss") is not None]
        evals = [e for e in events if e.get("eval_loss") is not None]
        last_ev = events[-1] if events else {}
        step = int(st.get("step") or last_ev.get("step") or 0)
        max_steps = int(st.get("max_steps") or last_ev.get("max_steps") or 0)
        last = {
            "loss": train[-1]["loss"] if train else None,
            "eval_loss": evals[-1]["eval_loss"] if evals else None,
            "lr": train[-1].get("lr") if train else None,
            "epoch": last_ev.get("epoch"),
            "tokens_per_s": next((e["tokens_per_s"] for e in reversed(events) if e.get("tokens_per_s")), None),
        }
        rs = RunStatus(
            run_id=run_id,
            state=state,
            run_dir=str(run_dir),
            phase=st.get("phase"),
            pid=pid,
            step=step,
            max_steps=max_steps,
            progress=1.0 if state == "completed" else (min(1.0, step / max_steps) if max_steps else 0.0),
            eta_s=0.0 if state in TERMINAL else last_ev.get("eta_s"),
            elapsed_s=last_ev.get("elapsed"),
            last=last,
            history=events,
            error=st.get("error"),
            adapter_path=st.get("adapter_path"),
            metrics=st.get("metrics") or {},
            warnings=st.get("warnings") or [],
            log_tail=tail_lines(run_dir / TRAIN_LOG, tail) if tail else "",
            wandb_dir=st.get("wandb_dir"),
        )
        self._sync_registry(run_id, rs, row)
        return rs

    def _sync_registry(self, run_id: str, rs: RunStatus, row: dict) -> None:
        changes: dict[str, Any] = {}
        for key, val in (
            ("state", rs.state),
            ("adapter_path", rs.adapter_path),
            ("error", rs.error),
            ("wandb_dir", rs.wandb_dir),
            ("pid", rs.pid),
        ):
            if row.get(key) != val:
                changes[key] = val
        if rs.metrics and row.get("metrics_json") != json.dumps(rs.metrics, default=str):
            changes["metrics_json"] = rs.metrics
        if changes:
            self.registry.upsert(run_id, **changes)

    # -- stop --
    def stop(self, run_id: str, timeout: float = 120.0) -> RunStatus:
        """SIGTERM the run's process group (the child checkpoints and exits), SIGKILL after `timeout` seconds.

        Multi-GPU: the group leader is accelerate's launcher, which forwards SIGTERM to every worker; all ranks then
        stop
        at the same step (the stop flag is all-reduced) and rank 0 records the state.
        """
        run_dir = self._run_dir(run_id)
        st = read_json(run_dir / STATUS_FILE) or {}
        row = self.registry.get(run_id) or {}
        pid = row.get("pid") or st.get("pid")
        if not self._alive(run_id, pid):
            return self.status(run_id)
        self.registry.upsert(run_id, stop_requested=1)
        try:
            os.killpg(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            return self.status(run_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._alive(run_id, pid):
            time.sleep(0.2)
        if self._alive(run_id, pid):
            workers = _descendants(int(pid))  # accelerate's workers live in sessions of their own: not in pid's group
            try:
                os.killpg(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
            for w in workers:
                try:
                    os.kill(w, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            p = self._procs.get(run_id)
            if p is not None:
                p.wait(timeout=30)
            else:
                for _ in range(100):
                    if not pid_alive(pid):
                        break
                    time.sleep(0.1)
            cur = read_json(run_dir / STATUS_FILE) or st
            if cur.get("state") in ACTIVE:
                write_json_atomic(
                    run_dir / STATUS_FILE,
                    {
                        **cur,
                        "state": "stopped",
                        "finished_at": time.time(),
                        "error": f"Did not stop within {timeout:.0f} s and was killed; resume starts from the last "
                        "periodic checkpoint.",
                    },
                )
        return self.status(run_id)

    # -- history --
    def runs(self) -> list[dict[str, Any]]:
        """Every registered run, newest first: config, state, final metrics, adapter path, W&B dir."""
        out = []
        for row in self.registry.all():
            if row["state"] in ACTIVE or row["state"] == "unknown":
                try:
                    self.status(row["run_id"], tail=0)
                except RunError:
                    pass
                row = self.registry.get(row["run_id"]) or row
            out.append(
                {
                    "run_id": row["run_id"],
                    "state": row["state"],
                    "created_at": row["created_at"],
                    "updated_at": row["updated_at"],
                    "run_dir": row["run_dir"],
                    "config": json.loads(row["config_json"] or "{}"),
                    "metrics": json.loads(row["metrics_json"]) if row.get("metrics_json") else {},
                    "adapter_path": row["adapter_path"],
                    "wandb_dir": row["wandb_dir"],
                    "error": row["error"],
                }
            )
        return out

    def log_events(self, run_id: str) -> list[dict]:
        return read_jsonl(self._run_dir(run_id) / LOG_FILE)


def _descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (from /proc), e.g. the per-GPU workers of an accelerate launch."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _abs_if_local(spec: str) -> str:
    """Local model folders become absolute (the child may run elsewhere); hub ids and "" stay as they are."""
    if not spec:
        return spec
    p = Path(spec).expanduser()
    return str(p.resolve()) if p.exists() else spec
