"""The product path on several GPUs: the Training tab's config (gpus "0,1") through RunManager -> accelerate launch ->
training.train, on the Qwen3-8B shape with random weights and a Qwen3-style tokenizer (tests/tiny_qwen3.py).

    python bench/gpu_train_product.py prep --model /tmp/q3-8b [--layers 36]     # random base + tokenizer, written once
    python bench/gpu_train_product.py runs --model /tmp/q3-8b --work /tmp/prod --out $OUT/product.json \
        [--only ddp,stop,fsdp] [--cpu-smoke]    # --cpu-smoke: the same code on the CPU (2 gloo processes)

Phases (each writes its part of the JSON as soon as it ends, so a timeout loses only what had not run):
  ddp    the QLoRA preset with gpus "0,1": runs to completion; one train.log with both ranks, one writer of
         trainer_log.jsonl, one adapter folder.
  stop   a bf16 DDP run started and stopped through RunManager.stop; then nvidia-smi's process list (must be empty) and
         the processes still naming the run folder (must be none).
  fsdp   distributed=fsdp on gpus "0,1" with the bf16 base, then the same config on gpus "0" (one GPU): each rank's peak
         memory (the trainer's metrics, PyTorch allocated; and nvidia-smi's used memory sampled every 0.5 s).
  check  (a child process, so this parent never holds a GPU) loads the base once through the app's loader and each
         adapter through the app's AdapterBank: the adapter must change the logits; FSDP's adapter tensors must
         equal the one-GPU adapter's in names and shapes.
compile_layers is off in these runs (a ~1 min compile per run would buy nothing here: this checks the path, the bench
measures speed); FSDP turns Liger and compile off itself (training/train.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from bench.gpu_common import QWEN3_8B  # noqa: E402
from training.launch import CPU_PROCESSES_ENV  # noqa: E402
from training.runner import RunManager  # noqa: E402
from training.service import build_config  # noqa: E402  (the Training tab's form -> config)

PRESET = "qwen3-8b-qlora"
SMOKE_LAYERS = dict(
    vocab_size=4096,
    hidden_size=64,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    num_hidden_layers=2,
)


# ---- prep ----------------------------------------------------------------------------------------------------------
def prep(model_dir: Path, layers: int | None, smoke: bool) -> None:
    """Random Qwen3-8B-shaped base (bf16, built on the GPU in <1 s) saved with the tests' Qwen3-style tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    from tests.support.tiny_qwen3 import build_tokenizer

    if (model_dir / "config.json").is_file():
        print("model already at", model_dir, flush=True)
        return
    model_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(model_dir)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    shape = {**QWEN3_8B, **(SMOKE_LAYERS if smoke else {}), **({"num_hidden_layers": layers} if layers else {})}
    cfg = Qwen3Config(**shape, eos_token_id=im_end, pad_token_id=tok.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device("cpu" if smoke else "cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32 if smoke else torch.bfloat16)
    model.generation_config.eos_token_id = im_end
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(model_dir))
    secs = time.perf_counter() - t0
    print(f"saved {shape['num_hidden_layers']}-layer model to {model_dir} in {secs:.1f} s", flush=True)


# ---- GPU memory as nvidia-smi sees it ----------------------------------------------------------------------------
def nvidia_smi(*args: str) -> str:
    try:
        return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"nvidia-smi unavailable: {type(exc).__name__}"


class GpuSampler:
    """Peak memory.used (MiB) per GPU, polled every 0.5 s while a run is in flight."""

    def __init__(self):
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            for line in nvidia_smi("--query-gpu=index,memory.used", "--format=csv,noheader,nounits").splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                    i, used = int(parts[0]), int(parts[1])
                    self.peak[i] = max(self.peak.get(i, 0), used)
            self._stop.wait(0.5)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(timeout=5)

    def gib(self) -> dict[str, float]:
        return {str(k): round(v / 1024, 2) for k, v in sorted(self.peak.items())}


# ---- runs ----------------------------------------------------------------------------------------------------------
def config(model_dir: Path, name: str, gpus: str, **kw):
    """What the Training tab submits: the preset, the GPU text box, and the fields it shows (here: short-run values)."""
    form = {
        "run_name": name,
        "gpus": gpus,
        "base_model": str(model_dir),
        "max_steps": 12,
        "eval_steps": 6,
        "save_steps": 6,
        "logging_steps": 1,
        "compile_layers": False,
        **kw,
    }
    return build_config(PRESET, "", form)


def wait(mgr: RunManager, run_id: str, pred, timeout: float):
    """Poll until pred(status); on timeout stop the run (so the next phase can start) and raise."""
    deadline = time.time() + timeout
    st = mgr.status(run_id, tail=0)
    while time.time() < deadline:
        st = mgr.status(run_id, tail=0)
        if pred(st):
            return st
        time.sleep(0.5)
    print(mgr.status(run_id, tail=40).log_tail, flush=True)
    mgr.stop(run_id, timeout=60)
    raise TimeoutError(f"{run_id}: timed out after {timeout:.0f} s at state {st.state} step {st.step}; stopped it")


def processes_naming(path: Path) -> list[str]:
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            raw = cmdline.read_bytes()
        except OSError:
            continue
        if str(path).encode() in raw:
            text = raw.replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{cmdline.parent.name}: {text[:160]}")
    return out


def summary(mgr: RunManager, run_id: str, wall: float, sampler: GpuSampler | None) -> dict:
    st = mgr.status(run_id, tail=0)
    log = (Path(st.run_dir) / "train.log").read_text(errors="replace")
    events = [e["event"] for e in st.history]
    m = st.metrics or {}
    fmt = m.get("formatting") or {}
    return {
        "run_id": run_id,
        "state": st.state,
        "error": st.error,
        "step": st.step,
        "wall_s": round(wall, 1),
        "adapter_path": st.adapter_path,
        "launcher": next((ln for ln in log.splitlines() if ln.startswith("=== start")), ""),
        "ranks_in_log": sorted({int(r) for r in re.findall(r"\[rank (\d+)\]", log)}),
        "begin_events": events.count("begin"),
        "end_events": events.count("end"),
        "train_steps_logged": [e["step"] for e in st.history if e.get("event") == "train"],
        "eval_loss": m.get("eval_loss"),
        "base_eval_loss": m.get("base_eval_loss"),
        "tokens_per_s": m.get("tokens_per_s"),
        "peak_gpu_gib_per_rank": m.get("peak_gpu_gib_per_rank"),
        "nvidia_smi_peak_gib": sampler.gib() if sampler else None,
        "distributed": fmt.get("distributed"),
        "packing": fmt.get("packing"),
        "quantized": m.get("quantized"),
        "dtype": m.get("dtype"),
    }


def released(mgr: RunManager, timeout: float = 120) -> float:
    """Seconds until the run's processes have all exited (the launcher holds the one-run lock until then)."""
    t0 = time.time()
    while mgr.active_run() is not None and time.time() - t0 < timeout:
        time.sleep(0.2)
    return round(time.time() - t0, 1)


def run_to_end(mgr: RunManager, cfg, env: dict, timeout: float) -> dict:
    t0 = time.time()
    with GpuSampler() as sampler:
        h = mgr.start(cfg, env=env)
        wait(mgr, h.run_id, lambda s: not s.active, timeout)
        exit_s = released(mgr)
    out = {**summary(mgr, h.run_id, time.time() - t0, sampler), "processes_exit_s_after_final_state": exit_s}
    print(json.dumps(out), flush=True)
    if out["state"] != "completed":
        print(mgr.status(h.run_id, tail=80).log_tail, flush=True)
    return out


def phase_stop(mgr: RunManager, model_dir: Path, env: dict, timeout: float, smoke: bool) -> dict:
    cfg = config(model_dir, "x2-stop", "0,1", load_in_4bit=False, max_steps=400, eval_steps=200, save_steps=200)
    h = mgr.start(cfg, env=env)
    wait(mgr, h.run_id, lambda s: (s.state == "running" and s.step >= 3) or not s.active, timeout)
    t0 = time.time()
    st = mgr.stop(h.run_id, timeout=120)
    stop_s = time.time() - t0
    released(mgr)
    log = (Path(st.run_dir) / "train.log").read_text(errors="replace")
    ends = re.findall(
        r"Rank (\d) of 2 finished training at step (\d+) "
        r"\(stop requested: (\w+); own stop signal: (\w+)\)",
        log,
    )
    out = {
        "run_id": h.run_id,
        "state": st.state,
        "step": st.step,
        "stop_s": round(stop_s, 1),
        "error": st.error,
        "rank_ends": ends,
        "processes_naming_run": processes_naming(Path(st.run_dir)),
        "nvidia_smi_apps": nvidia_smi("--query-compute-apps=pid,process_name,used_memory", "--format=csv"),
        "nvidia_smi": nvidia_smi(),
        "cpu_smoke": smoke,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "nvidia_smi"}), flush=True)
    print(out["nvidia_smi"], flush=True)
    return out


def run_check(model_dir: Path, adapters: Path, names: dict[str, str], smoke: bool, timeout: float) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "check",
        "--model",
        str(model_dir),
        "--adapters",
        str(adapters),
        "--names",
        json.dumps(names),
    ] + (["--cpu-smoke"] if smoke else [])
    proc = subprocess.run(cmd, cwd=str(ROOT), capture_output=True, text=True, timeout=timeout, env=child_env(smoke))
    sys.stdout.write(proc.stderr[-3000:])
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")), None)
    return json.loads(line) if line else {"error": f"check exited {proc.returncode}", "stderr": proc.stderr[-2000:]}


def check(model_dir: Path, adapters: Path, names: dict[str, str], smoke: bool) -> dict:
    """The app's loader + AdapterBank: each adapter loads and changes the logits; FSDP's tensors match one GPU's."""
    import torch
    from safetensors import safe_open

    from generation import ModelConfig, load_base
    from generation.adapters import AdapterBank

    lm = load_base(
        ModelConfig(
            base_model=str(model_dir), load_in_4bit=False, device="cpu" if smoke else "cuda:0", cpu_dtype="float32"
        )
    )
    bank = AdapterBank(lm.model, lm.name, adapters)
    ids = lm.tokenizer("Coffee before code? Always.", return_tensors="pt")["input_ids"].to(lm.model.device)
    with torch.no_grad():
        base = lm.model(input_ids=ids).logits.float()
    out: dict = {"available": bank.available(), "adapters": {}}
    shapes: dict[str, dict] = {}
    for label, name in names.items():
        try:
            with bank.activate(name) as m, torch.no_grad():
                logits = m(input_ids=ids).logits.float()
            with safe_open(str(adapters / name / "adapter_model.safetensors"), "pt") as f:
                shapes[label] = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
            params = sum(int(torch.tensor(s).prod()) for s in shapes[label].values())
            change = float((logits - base).abs().max())
            out["adapters"][label] = {
                "name": name,
                "loaded": True,
                "max_logit_change": change,
                "tensors": len(shapes[label]),
                "params": params,
            }
        except Exception as exc:  # noqa: BLE001 - report which adapter failed and why, keep checking the others
            out["adapters"][label] = {"name": name, "loaded": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    if "fsdp" in shapes and "one_gpu" in shapes:
        out["fsdp_equals_one_gpu_shapes"] = shapes["fsdp"] == shapes["one_gpu"]
        fs, one = shapes["fsdp"], shapes["one_gpu"]
        out["fsdp_shape_diff"] = sorted(k for k in set(fs) | set(one) if fs.get(k) != one.get(k))[:10]
    return out


def child_env(smoke: bool) -> dict:
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "NCCL_NVLS_ENABLE": "0",
        "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
        "NVSHMEM_DISABLE_NVLS": "1",
    }  # NVLink multicast stays off on shared hosts
    if smoke:
        env.update({CPU_PROCESSES_ENV: "2", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"})
    return env


def runs(a) -> dict:
    model_dir, work = Path(a.model), Path(a.work)
    mgr = RunManager(work / "data", work / "adapters")
    smoke = a.cpu_smoke
    env = {k: v for k, v in child_env(smoke).items() if k not in os.environ or os.environ[k] != v}
    phases = a.only.split(",")
    payload: dict = {"model": str(model_dir), "cpu_smoke": smoke, "phases": phases}
    out = Path(a.out)

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=1, default=str))

    def attempt(key, fn):
        t0 = time.time()
        print(f"\n== {key}", flush=True)
        try:
            payload[key] = fn()
        except Exception as exc:  # noqa: BLE001 - one phase failing must not lose the others
            import traceback

            traceback.print_exc()
            payload[key] = {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
        payload[key]["phase_s"] = round(time.time() - t0, 1)
        save()

    names: dict[str, str] = {}
    if "ddp" in phases:
        attempt("ddp", lambda: run_to_end(mgr, config(model_dir, "x2-ddp-qlora", "0,1"), env, a.timeout))
        if payload["ddp"].get("state") == "completed":
            names["ddp_qlora"] = payload["ddp"]["run_id"]
    if "stop" in phases:
        attempt("stop", lambda: phase_stop(mgr, model_dir, env, a.timeout, smoke))
    if "fsdp" in phases:
        fsdp_cfg = config(model_dir, "x2-fsdp-bf16", "0,1", load_in_4bit=False, distributed="fsdp")
        one_cfg = config(model_dir, "x1-bf16", "0", load_in_4bit=False)
        attempt("fsdp", lambda: run_to_end(mgr, fsdp_cfg, env, a.timeout))
        attempt("one_gpu", lambda: run_to_end(mgr, one_cfg, env, a.timeout))
        for k in ("fsdp", "one_gpu"):
            if payload[k].get("state") == "completed":
                names[k] = payload[k]["run_id"]
    if names:
        attempt("check", lambda: run_check(model_dir, work / "adapters", names, smoke, a.timeout))
        print(json.dumps(payload["check"]), flush=True)
    return payload


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["prep", "runs", "check"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--work", default="/tmp/x2-product")
    ap.add_argument("--out", default="product.json")
    ap.add_argument("--only", default="ddp,stop,fsdp")
    ap.add_argument("--timeout", type=float, default=240, help="seconds each run may take")
    ap.add_argument("--adapters")
    ap.add_argument("--names")
    ap.add_argument("--cpu-smoke", action="store_true")
    a = ap.parse_args(argv)
    if a.what == "prep":
        prep(Path(a.model), a.layers, a.cpu_smoke)
    elif a.what == "runs":
        runs(a)
    else:
        print(json.dumps(check(Path(a.model), Path(a.adapters), json.loads(a.names), a.cpu_smoke)), flush=True)


if __name__ == "__main__":
    main()
