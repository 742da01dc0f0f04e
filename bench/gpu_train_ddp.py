"""Multi-GPU scaling of the project's LoRA fast path on the Qwen3-8B shape: tokens/s on 1 GPU and on N GPUs (DDP).

    python bench/gpu_train.py --gpus 2 [--steps 20 --pack-tokens 1024 --rows 4 --compile]
    python bench/gpu_train.py --gpus 2 --cpu-smoke      # the same code path on the CPU: tiny Qwen3, gloo (tests)

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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.gpu_common import QWEN3_8B, tweet_examples, write_results  # noqa: E402
from training.launch import accelerate_args, free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SMOKE = dict(vocab_size=4096, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=2048, tie_word_embeddings=False)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_args(ap)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    return ap


def add_args(ap: argparse.ArgumentParser, steps_default: int | None = 20) -> None:
    """The scaling flags (bench/gpu_train.py adds them to its own parser)."""
    ap.add_argument("--gpus", type=int, default=0, help="measure 1 GPU and this many GPUs (DDP) in the same run")
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny Qwen3 on the CPU with gloo: exercises the multi-process path")
    ap.add_argument("--rows", type=int, default=4, help="packed rows per step per GPU")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--layers", type=int, default=None, help="decoder layers (default 36, the 8B shape)")
    ap.add_argument("--compile", action="store_true", help="torch.compile each decoder layer (as the trainer does on bf16)")
    ap.add_argument("--no-liger", dest="liger", action="store_false")
    if steps_default is not None:
        ap.add_argument("--steps", type=int, default=steps_default)
        ap.add_argument("--pack-tokens", type=int, default=1024)


# ---- one process: the measured step loop ------------------------------------------------------------------------
def build_model(device, smoke: bool, layers: int | None):
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    torch.manual_seed(0)  # identical base weights on every rank (DDP broadcasts rank 0's anyway)
    if not smoke:
        from bench.gpu_common import qwen3_8b

        return qwen3_8b(layers=layers)  # on the current CUDA device (set to LOCAL_RANK's)
    cfg = Qwen3Config(**{**SMOKE, **({"num_hidden_layers": layers} if layers else {})})
    with torch.device(device):
        return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32, attn_implementation="sdpa")


def worker(a) -> dict | None:
    import torch
    import torch.distributed as dist
    from peft import LoraConfig, get_peft_model
    from torch.nn.parallel import DistributedDataParallel as DDP

    from bench.gpu_train import packed_batches
    from training.fastpath import apply_liger, prepare_for_packing

    launched = "LOCAL_RANK" in os.environ  # under accelerate launch: DDP (even with one process)
    rank, world, local = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))
    smoke = a.cpu_smoke
    if smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)
    else:
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if launched:
        dist.init_process_group("gloo" if smoke else "nccl", **({} if smoke else {"device_id": device}))
    model = build_model(device, smoke, a.layers)
    model.config.use_cache = False
    liger = apply_liger(model) if (a.liger and not smoke) else False
    prepare_for_packing(model)
    pm = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM"))
    pm.train()
    if a.compile and not smoke:
        for layer in pm.base_model.model.model.layers:
            layer.compile(dynamic=False)
    net = DDP(pm, device_ids=None if smoke else [local], find_unused_parameters=False) if launched else pm
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
    result = {"world": world if launched else 1, "ddp": launched, "tokens": tokens, "seconds": secs,
              "tokens_per_s": tokens / secs, "tokens_per_s_per_gpu": tokens / secs / (world if launched else 1),
              "peak_gib_max": peak, "last_loss": last_loss, "replicas_in_sync": bool(in_sync), "steps": a.steps,
              "warmup": a.warmup, "pack_tokens": a.pack_tokens, "rows_per_gpu": a.rows, "liger": liger, "compile": bool(a.compile and not smoke),
              "device": "cpu" if smoke else torch.cuda.get_device_name(device)}
    if rank == 0:
        if a.out:
            Path(a.out).write_text(json.dumps(result))
        print("RESULT", json.dumps(result), flush=True)
    if launched:
        # Skip the interpreter's teardown: freeing the DDP reducer's gloo group while its worker thread still waits
        # for the GIL to release a finished collective's tensors deadlocks (seen on the CPU path). Everything is written.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return result


# ---- the parent: 1 GPU, then N GPUs through accelerate launch -----------------------------------------------------
def _worker_args(a, out: Path) -> list[str]:
    args = [str(Path(__file__).resolve()), "--worker", "--out", str(out), "--steps", str(a.steps), "--warmup", str(a.warmup),
            "--pack-tokens", str(a.pack_tokens), "--rows", str(a.rows)]
    if a.layers:
        args += ["--layers", str(a.layers)]
    if a.compile:
        args.append("--compile")
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


def scaling(a) -> dict:
    """Measure 1 GPU and a.gpus GPUs in the same run; print and write the scaling."""
    n = max(1, a.gpus)
    tmp = Path(tempfile.mkdtemp(prefix="ddp-bench-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "PYTHONUNBUFFERED": "1"}
    env.setdefault("NCCL_NVLS_ENABLE", "0")  # keep NVLink multicast off (shared hosts)
    env.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
    if a.cpu_smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env.setdefault("OMP_NUM_THREADS", "1")
    limit = 600 if a.cpu_smoke else 1800
    one = _run([sys.executable, *_worker_args(a, tmp / "one.json")], env, "1 process", tmp / "one.json", limit)
    payload: dict = {"gpus": n, "cpu_smoke": bool(a.cpu_smoke), "one_gpu": one}
    if n > 1:
        cmd = [sys.executable, *accelerate_args(n, port=free_port(), cpu=a.cpu_smoke), *_worker_args(a, tmp / "many.json")]
        many = _run(cmd, env, f"{n} processes (DDP via accelerate launch)", tmp / "many.json", limit)
        s = many["tokens_per_s"] / one["tokens_per_s"]
        payload.update({"n_gpus": many, "scaling": s, "efficiency": s / n, "target_scaling": 0.9 * n, "meets_target": s >= 0.9 * n})
    print(f"\n{'GPUs':>5} {'tok/s':>10} {'tok/s/GPU':>10} {'peak GiB':>9} {'in sync':>8}")
    for r in [one] + ([payload["n_gpus"]] if n > 1 else []):
        print(f"{r['world']:>5} {r['tokens_per_s']:10.0f} {r['tokens_per_s_per_gpu']:10.0f} {r['peak_gib_max']:9.1f} {str(r['replicas_in_sync']):>8}")
    if n > 1:
        print(f"scaling = tok/s({n}) / tok/s(1) = {payload['scaling']:.2f} (target >= {0.9 * n:.1f}: "
              f"{'met' if payload['meets_target'] else 'NOT met'}; efficiency {payload['efficiency']:.0%})")
    path = write_results("gpu-train-ddp" + ("-cpu-smoke" if a.cpu_smoke else ""), payload)
    print("wrote", path, flush=True)
    return payload


def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    if a.worker:
        worker(a)
    else:
        scaling(a)


if __name__ == "__main__":
    main()
