"""Multi-GPU scaling of the project's LoRA fast path on the Qwen3-8B shape: tokens/s on 1 GPU and on N GPUs (DDP).

    python bench/gpu_train.py --gpus 2 [--only bf16|qlora|all] [--steps 20 --pack-tokens 1024 --rows 4 --compile]
    python bench/gpu_train.py --gpus 2 --cpu-smoke      # the same code path on the CPU: tiny Qwen3, gloo (tests)

Modes: bf16 = bf16 base, no checkpointing (the trainer's bf16 fast path); qlora = NF4 double-quant base loaded from a
saved folder (--model-dir; written once by a GPU child when missing), gradient checkpointing, embeddings/head/norms kept
in
bf16 (the trainer's QLoRA fast path: prepare_model_for_kbit_training + keep_bf16). On the CPU (--cpu-smoke) qlora cannot
quantize: it runs the same loop with gradient checkpointing on the fp32 tiny model and says quantized=false.

The parent process never touches a GPU. It runs the 1-GPU measurement as a plain child process, then the N-GPU one
through `accelerate launch --multi_gpu --num_processes N` (training/launch.py's flags), where each rank runs the same
fast-path step loop (packed rows, Liger, fused AdamW, no checkpointing) on a DDP-wrapped PEFT model with its own data.
Rank 0 all-reduces tokens (sum) and time (max) and writes the aggregate; the parent prints
scaling = tok/s(N) / tok/s(1) against the target 0.9 N (1.8 on 2 GPUs) and writes raw JSON via write_results.
Every rank also checks that the LoRA weights are identical on all ranks after the last step (DDP kept them in sync).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.gpu_common import TARGETS, packed_batches, qwen3_8b, tweet_examples, write_results  # noqa: E402
from training.fastpath import apply_liger, keep_bf16, prepare_for_packing  # noqa: E402
from training.launch import accelerate_args, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODES = ("bf16", "qlora")
SMOKE = dict(
    vocab_size=4096,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=2048,
    tie_word_embeddings=False,
)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_args(ap)
    ap.add_argument("--only", choices=["bf16", "qlora", "all"], default="all")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--save-model", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", choices=MODES, default="bf16", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    return ap


def add_args(ap: argparse.ArgumentParser, steps_default: int | None = 20) -> None:
    """The scaling flags (bench/gpu_train.py adds them to its own parser)."""
    ap.add_argument("--gpus", type=int, default=0, help="measure 1 GPU and this many GPUs (DDP) in the same run")
    ap.add_argument(
        "--cpu-smoke", action="store_true", help="tiny Qwen3 on the CPU with gloo: exercises the multi-process path"
    )
    ap.add_argument("--rows", type=int, default=4, help="packed rows per step per GPU")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--layers", type=int, default=None, help="decoder layers (default 36, the 8B shape)")
    ap.add_argument(
        "--compile", action="store_true", help="torch.compile each decoder layer (as the trainer does on bf16)"
    )
    ap.add_argument("--no-liger", dest="liger", action="store_false")
    ap.add_argument(
        "--comm-hook",
        choices=["none", "bf16"],
        default="none",
        help="DDP gradient all-reduce in bf16 (torch's bf16_compress_hook): half the bytes of the fp32 LoRA grads",
    )
    ap.add_argument("--model-dir", default=None, help="saved random model for the qlora mode (default: a temp folder)")
    if steps_default is not None:
        ap.add_argument("--steps", type=int, default=steps_default)
        ap.add_argument("--pack-tokens", type=int, default=1024)


# ---- one process: the measured step loop ------------------------------------------------------------------------
def build_model(device, smoke: bool, layers: int | None):
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    torch.manual_seed(0)  # identical base weights on every rank (DDP broadcasts rank 0's anyway)
    if not smoke:
        return qwen3_8b(layers=layers)  # on the current CUDA device (set to LOCAL_RANK's)
    cfg = Qwen3Config(**{**SMOKE, **({"num_hidden_layers": layers} if layers else {})})
    with torch.device(device):
        return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="sdpa")


def save_model(a) -> None:
    """The qlora mode's base: the same random weights written once (a GPU child: builds in <1 s; CPU for the smoke)."""
    import torch

    if not a.cpu_smoke:
        torch.cuda.set_device(0)
    model = build_model(torch.device("cpu" if a.cpu_smoke else "cuda"), a.cpu_smoke, a.layers)
    model.save_pretrained(a.model_dir)
    print("saved", a.model_dir, flush=True)


def load_qlora(a, device, smoke: bool):
    """NF4 double-quant base with the trainer's QLoRA fast-path preparation (training/train.py does the same)."""
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    if smoke:  # no 4-bit kernels on the CPU: same loop and checkpointing, fp32 weights
        model = AutoModelForCausalLM.from_pretrained(a.model_dir, dtype=torch.float32, attn_implementation="sdpa")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
        return model
    from generation.loader import nf4_config

    q = nf4_config()
    model = AutoModelForCausalLM.from_pretrained(
        a.model_dir,
        quantization_config=q,
        dtype=torch.bfloat16,
        attn_implementation="sdpa",
        device_map={"": device.index},
    )
    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=True, gradient_checkpointing_kwargs={"use_reentrant": False}
    )
    keep_bf16(model)
    return model


def worker(a) -> dict | None:
    import torch
    import torch.distributed as dist
    from peft import LoraConfig, get_peft_model
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import bf16_compress_hook
    from torch.nn.parallel import DistributedDataParallel as DDP

    launched = "LOCAL_RANK" in os.environ  # under accelerate launch: DDP (even with one process)
    rank, world, local = (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )
    smoke = a.cpu_smoke
    if smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)
    else:
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if launched:
        dist.init_process_group("gloo" if smoke else "nccl", **({} if smoke else {"device_id": device}))
    qlora = a.mode == "qlora"
    model = load_qlora(a, device, smoke) if qlora else build_model(device, smoke, a.layers)
    model.config.use_cache = False
    liger = apply_liger(model) if (a.liger and not smoke) else False
    prepare_for_packing(model)
    pm = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM")
    )
    pm.train()
    if a.compile and not smoke and not qlora:  # the trainer compiles layers on the bf16 path only
        for layer in pm.base_model.model.model.layers:
            layer.compile(dynamic=False)
    net = DDP(pm, device_ids=None if smoke else [local], find_unused_parameters=False) if launched else pm
    if launched and a.comm_hook == "bf16" and not smoke:  # NCCL only (gloo has no bf16 all-reduce)
        net.register_comm_hook(None, bf16_compress_hook)
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01, fused=not smoke)
    need = (a.steps + a.warmup) * (a.pack_tokens // 120 + 8) * a.rows
    ex = tweet_examples(need + 64, seed=1000 + rank, vocab=model.config.vocab_size)  # each rank its own data
    it = packed_batches(ex, a.pack_tokens, a.rows)
    batches = [next(it) for _ in range(a.steps + a.warmup)]

    def sync():
        if not smoke:
            torch.cuda.synchronize(device)

    if not smoke:
        torch.cuda.reset_peak_memory_stats(device)
    tokens, t0 = 0, time.perf_counter()
    for s, (b, n) in enumerate(batches):
        if s == a.warmup:  # all ranks start the clock together
            sync()
            if launched:
                dist.barrier()
            t0 = time.perf_counter()
        b = {k: t.to(device, non_blocking=True) for k, t in b.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=not smoke):
            loss = net(**b).loss
        loss.backward()  # DDP all-reduces the LoRA gradients during the backward pass
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if s >= a.warmup:
            tokens += n
    sync()
    secs = time.perf_counter() - t0
    last_loss = float(loss.item())
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if not smoke else 0.0
    in_sync = True
    if launched:
        tot = torch.tensor([float(tokens)], dtype=torch.float64, device=device)
        dist.all_reduce(tot, op=dist.ReduceOp.SUM)
        mx = torch.tensor([secs, peak], dtype=torch.float64, device=device)
        dist.all_reduce(mx, op=dist.ReduceOp.MAX)
        sums = torch.stack([p.detach().double().sum() for p in params])
        gathered = [torch.zeros_like(sums) for _ in range(world)]
        dist.all_gather(gathered, sums)
        in_sync = all(torch.allclose(g, gathered[0], rtol=1e-6, atol=1e-9) for g in gathered)
        tokens, secs, peak = int(tot.item()), float(mx[0].item()), float(mx[1].item())
        dist.barrier()
    result = {
        "mode": a.mode,
        "quantized": qlora and not smoke,
        "grad_ckpt": qlora,
        "world": world if launched else 1,
        "ddp": launched,
        "tokens": tokens,
        "seconds": secs,
        "tokens_per_s": tokens / secs,
        "tokens_per_s_per_gpu": tokens / secs / (world if launched else 1),
        "peak_gib_max": peak,
        "last_loss": last_loss,
        "replicas_in_sync": bool(in_sync),
        "steps": a.steps,
        "warmup": a.warmup,
        "pack_tokens": a.pack_tokens,
        "rows_per_gpu": a.rows,
        "liger": liger,
        "compile": bool(a.compile and not smoke and not qlora),
        "comm_hook": a.comm_hook if launched else "none",
        "device": "cpu" if smoke else torch.cuda.get_device_name(device),
    }
    if rank == 0:
        if a.out:
            Path(a.out).write_text(json.dumps(result))
        print("RESULT", json.dumps(result), flush=True)
    if launched:
        # Skip the interpreter's teardown: freeing the DDP reducer's gloo group while its worker thread still waits
        # for the GIL to release a finished collective's tensors deadlocks (seen on the CPU path). Everything is
        # written.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return result


# ---- the parent: 1 GPU, then N GPUs through accelerate launch -----------------------------------------------------
def _worker_args(a, mode: str, out: Path) -> list[str]:
    args = [
        str(Path(__file__).resolve()),
        "--worker",
        "--mode",
        mode,
        "--out",
        str(out),
        "--steps",
        str(a.steps),
        "--warmup",
        str(a.warmup),
        "--pack-tokens",
        str(a.pack_tokens),
        "--rows",
        str(a.rows),
    ]
    if mode == "qlora":
        args += ["--model-dir", str(a.model_dir)]
    if a.layers:
        args += ["--layers", str(a.layers)]
    if a.compile:
        args.append("--compile")
    if a.comm_hook != "none":
        args += ["--comm-hook", a.comm_hook]
    if not a.liger:
        args.append("--no-liger")
    if a.cpu_smoke:
        args.append("--cpu-smoke")
    return args


def _run(cmd: list[str], env: dict, what: str, out: Path, timeout: float) -> dict:
    print(f"\n== {what}: {' '.join(cmd)}", flush=True)
    proc = subprocess.run(cmd, cwd=str(ROOT), env=env, timeout=timeout)
    if proc.returncode != 0 or not out.is_file():
        raise SystemExit(f"{what} failed (exit code {proc.returncode}); see its output above.")
    return json.loads(out.read_text())


def _env(a) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "PYTHONUNBUFFERED": "1",
    }
    env.setdefault("NCCL_NVLS_ENABLE", "0")  # keep NVLink multicast off (shared hosts)
    env.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
    env.setdefault("NVSHMEM_DISABLE_NVLS", "1")
    if a.cpu_smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def scale_one(a, mode: str, env: dict, tmp: Path, limit: float) -> dict:
    """1 process, then a.gpus processes (DDP), of one mode; the scaling between them."""
    n = max(1, a.gpus)
    if mode == "qlora" and not (Path(a.model_dir) / "config.json").is_file():
        cmd = [sys.executable, str(Path(__file__).resolve()), "--save-model", "--model-dir", str(a.model_dir)]
        cmd += (["--layers", str(a.layers)] if a.layers else []) + (["--cpu-smoke"] if a.cpu_smoke else [])
        print(f"\n== {mode}: writing the random base once: {' '.join(cmd)}", flush=True)
        subprocess.run(cmd, cwd=str(ROOT), env=env, timeout=limit, check=True)
    one = _run(
        [sys.executable, *_worker_args(a, mode, tmp / f"{mode}-one.json")],
        env,
        f"{mode}: 1 process",
        tmp / f"{mode}-one.json",
        limit,
    )
    res: dict = {"one_gpu": one}
    if n > 1:
        cmd = [
            sys.executable,
            *accelerate_args(n, port=free_port(), cpu=a.cpu_smoke),
            *_worker_args(a, mode, tmp / f"{mode}-many.json"),
        ]
        many = _run(cmd, env, f"{mode}: {n} processes (DDP via accelerate launch)", tmp / f"{mode}-many.json", limit)
        s = many["tokens_per_s"] / one["tokens_per_s"]
        res.update(
            {"n_gpus": many, "scaling": s, "efficiency": s / n, "target_scaling": 0.9 * n, "meets_target": s >= 0.9 * n}
        )
    return res


def scaling(a) -> dict:
    """Measure 1 GPU and a.gpus GPUs in the same run, per mode (bf16, qlora); print and write the scaling."""
    n = max(1, a.gpus)
    tmp = Path(tempfile.mkdtemp(prefix="ddp-bench-"))
    a.model_dir = a.model_dir or str(tmp / "model")
    env = _env(a)
    limit = 600 if a.cpu_smoke else 1800
    modes = list(MODES) if a.only == "all" else [a.only]
    payload: dict = {"gpus": n, "cpu_smoke": bool(a.cpu_smoke), "modes": {}}
    for mode in modes:
        try:
            payload["modes"][mode] = scale_one(a, mode, env, tmp, limit)
        except (SystemExit, subprocess.SubprocessError, OSError) as exc:  # one mode failing must not lose the other
            payload["modes"][mode] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{mode} failed: {exc}", flush=True)
    print(f"\n{'mode':>6} {'GPUs':>5} {'tok/s':>10} {'tok/s/GPU':>10} {'peak GiB':>9} {'in sync':>8}")
    for mode, res in payload["modes"].items():
        for r in [res[k] for k in ("one_gpu", "n_gpus") if k in res]:
            print(
                f"{mode:>6} {r['world']:>5} {r['tokens_per_s']:10.0f} {r['tokens_per_s_per_gpu']:10.0f} "
                f"{r['peak_gib_max']:9.1f} "
                f"{str(r['replicas_in_sync']):>8}"
            )
        if "scaling" in res:
            print(
                f"{mode}: scaling = tok/s({n}) / tok/s(1) = {res['scaling']:.2f} (target >= {0.9 * n:.1f}: "
                f"{'met' if res['meets_target'] else 'NOT met'}; efficiency {res['efficiency']:.0%})"
            )
        elif "error" in res:
            print(f"{mode}: ERROR {res['error']}")
    payload["comm_hook"] = a.comm_hook
    path = write_results(
        "gpu-train-ddp"
        + ("" if a.comm_hook == "none" else f"-{a.comm_hook}-hook")
        + ("-cpu-smoke" if a.cpu_smoke else ""),
        payload,
    )
    print("wrote", path, flush=True)
    return payload


def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    if a.save_model:
        save_model(a)
    elif a.worker:
        worker(a)
    else:
        scaling(a)


if __name__ == "__main__":
    main()
