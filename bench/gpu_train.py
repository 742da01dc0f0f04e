"""LoRA / QLoRA training throughput on the Qwen3-8B shape: the plain transformers+PEFT baseline and the project's fast
path (training/fastpath.py: packed rows with a block-diagonal mask from position ids, no padding, no checkpointing when
memory allows, dropout-free LoRA, fused AdamW, Liger kernels), measured in the same run after a correctness check.

Run on the device: python bench/gpu_train.py [--steps 6] [--only bf16|qlora]
Multi-GPU scaling (bench/gpu_train_ddp.py): python bench/gpu_train.py --gpus 2 measures the fast path's tokens/s on 1
GPU
and on 2 GPUs (DDP through accelerate launch) in the same run and prints scaling = tok/s(2) / tok/s(1) (target >= 1.8);
add --cpu-smoke to run that code path on the CPU (tiny Qwen3, gloo), as tests/test_multigpu.py does.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import traceback
from dataclasses import asdict, dataclass

from bench.gpu_common import (  # noqa: E402
    N_MATMUL,
    TARGETS,
    Timer,
    packed_batches,
    padded_batches,
    qwen3_8b,
    tweet_examples,
    write_results,
)
from bench.gpu_train_ddp import add_args, scaling  # noqa: E402
from training.fastpath import PackedCollator, apply_liger, pack_examples, prepare_for_packing  # noqa: E402


@dataclass
class Variant:
    name: str
    micro_batch: int = 4  # examples per step when not packed
    packed: bool = False
    pack_tokens: int = 4096
    grad_ckpt: bool = True
    dropout: float = 0.1
    fused_adamw: bool = False
    liger: bool = False
    attn: str = "sdpa"
    baseline: bool = False
    rows: int = 1  # packed rows per micro-batch
    compile: bool = False


def run_variant(model, v: Variant, steps: int, warmup: int = 2) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    model.set_attn_implementation(v.attn) if hasattr(model, "set_attn_implementation") else None
    pm = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=16, lora_dropout=v.dropout, target_modules=TARGETS, task_type="CAUSAL_LM")
    )
    if v.grad_ckpt:
        pm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        pm.enable_input_require_grads()
    pm.train()
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01, fused=v.fused_adamw)
    need = (steps + warmup) * ((v.pack_tokens // 120 + 8) * v.rows if v.packed else v.micro_batch)
    ex = tweet_examples(need + 64, seed=1)
    it = packed_batches(ex, v.pack_tokens, v.rows) if v.packed else padded_batches(ex, v.micro_batch)
    if v.compile:
        for layer in pm.base_model.model.model.layers:
            layer.compile(dynamic=False)
    batches = [next(it) for _ in range(steps + warmup)]
    torch.cuda.reset_peak_memory_stats()
    tokens, losses = 0, []
    for s, (b, n) in enumerate(batches):
        b = {k: t.cuda(non_blocking=True) for k, t in b.items()}
        if s == warmup:
            timer = Timer().__enter__()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = pm(**b).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item() if s == len(batches) - 1 else 0.0)
        if s >= warmup:
            tokens += n
    timer.__exit__()
    peak = torch.cuda.max_memory_allocated() / 2**30
    flops_per_token = (6 if v.grad_ckpt else 4) * N_MATMUL
    useful = 4 * N_MATMUL * tokens / timer.s / 1e12
    if v.grad_ckpt:
        pm.gradient_checkpointing_disable()
    if v.compile:
        for layer in pm.base_model.model.model.layers:
            layer._compiled_call_impl = None
    pm.unload()
    del pm, opt, params, batches
    gc.collect()
    torch.cuda.empty_cache()
    return {
        **asdict(v),
        "tokens_per_s": tokens / timer.s,
        "peak_gib": peak,
        "useful_tflops": useful,
        "hw_tflops": flops_per_token * tokens / timer.s / 1e12,
        "steps": steps,
        "last_loss": losses[-1],
    }


def correctness(model, liger_after: bool) -> dict:
    """Same LoRA weights, same 24 examples: plain padded (no Liger) loss and grads vs packed fast path (Liger)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    pm = get_peft_model(
        model,
        LoraConfig(
            r=16,
            lora_alpha=16,
            lora_dropout=0.0,
            target_modules=TARGETS,
            task_type="CAUSAL_LM",
            init_lora_weights=False,
        ),
    )
    for p in pm.parameters():
        if p.requires_grad:
            p.data.mul_(0.05)  # small random adapter: meaningful but sane
    ex = tweet_examples(24, seed=7)
    grads = {}

    def lora_grads():
        return torch.cat(
            [p.grad.float().flatten() for n, p in pm.named_parameters() if p.requires_grad and p.grad is not None]
        )

    ((b, _),) = list(padded_batches(ex, 24))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        plain = pm(**{k: t.cuda() for k, t in b.items()}).loss
    plain.backward()
    grads["plain"] = lora_grads()
    pm.zero_grad(set_to_none=True)
    liger = apply_liger(model) if liger_after else False
    prepare_for_packing(model)
    rows = pack_examples(ex, 4096)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        fast = pm(**{k: t.cuda() for k, t in PackedCollator()(rows).items()}).loss
    fast.backward()
    grads["fast"] = lora_grads()
    cos = torch.nn.functional.cosine_similarity(grads["plain"], grads["fast"], dim=0).item()
    pm.zero_grad(set_to_none=True)
    pm.unload()
    rel = abs(fast.item() - plain.item()) / abs(plain.item())
    return {
        "plain_loss": plain.item(),
        "fast_loss": fast.item(),
        "rel_diff": rel,
        "grad_cosine": cos,
        "liger": liger,
        "ok": rel < 1e-2 and cos > 0.99,
    }


def table(rows, base_name):
    base = next((r for r in rows if r["name"] == base_name), None)
    print(f"\n{'variant':44} {'tok/s':>9} {'peak GiB':>9} {'useful TF/s':>11} {'x base':>7}")
    for r in rows:
        if "error" in r:
            print(f"{r['name']:44} ERROR {r['error'][:60]}")
            continue
        ratio = r["tokens_per_s"] / base["tokens_per_s"] if base and "tokens_per_s" in base else math.nan
        print(f"{r['name']:44} {r['tokens_per_s']:9.0f} {r['peak_gib']:9.1f} {r['useful_tflops']:11.1f} {ratio:7.2f}")


def main():
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 6; 20 with --gpus)")
    ap.add_argument("--only", choices=["bf16", "qlora", "all"], default="all")
    ap.add_argument(
        "--pack-tokens", type=int, nargs="*", default=None, help="default 4096 (1024 with --gpus: the trainer's rows)"
    )
    ap.add_argument(
        "--names", nargs="*", default=None, help="only variants whose name contains one of these (baselines always run)"
    )
    add_args(ap, steps_default=None)  # --gpus N, --cpu-smoke, --rows, --warmup, --layers, --compile, --no-liger
    a = ap.parse_args()
    if a.gpus or a.cpu_smoke:  # the multi-GPU scaling run instead of the one-GPU variant sweep
        a.steps = a.steps or (3 if a.cpu_smoke else 20)
        a.pack_tokens = (a.pack_tokens or [256 if a.cpu_smoke else 1024])[0]
        a.gpus = a.gpus or 2
        scaling(a)
        return
    a.steps = a.steps or 6
    a.pack_tokens = a.pack_tokens or [4096]
    results = {"bf16": [], "qlora": [], "correctness": None}

    def attempt(model, v, bucket):
        if a.names and not v.baseline and not any(n in v.name for n in a.names):
            return
        try:
            r = run_variant(model, v, a.steps)
        except Exception as exc:  # one variant failing (OOM, kernel) must not lose the others
            traceback.print_exc()
            r = {**asdict(v), "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            gc.collect()
            torch.cuda.empty_cache()
        results[bucket].append(r)
        print(json.dumps(r), flush=True)

    if a.only in ("bf16", "all"):
        model = qwen3_8b()
        model.config.use_cache = False
        attempt(model, Variant("plain HF+PEFT seed shape (mb4, GC)", baseline=True), "bf16")
        attempt(model, Variant("plain HF+PEFT mb16, no GC", micro_batch=16, grad_ckpt=False, baseline=True), "bf16")
        results["correctness"] = correctness(model, liger_after=True)
        print("correctness", json.dumps(results["correctness"]), flush=True)
        fast = dict(packed=True, grad_ckpt=False, dropout=0.0, fused_adamw=True, liger=True)
        attempt(model, Variant("ours 1x4096 + Liger", pack_tokens=4096, **fast), "bf16")
        attempt(model, Variant("ours 4x1024 + Liger", pack_tokens=1024, rows=4, **fast), "bf16")
        attempt(model, Variant("ours 6x1024 + Liger", pack_tokens=1024, rows=6, **fast), "bf16")
        attempt(model, Variant("ours 8x512 + Liger", pack_tokens=512, rows=8, **fast), "bf16")
        attempt(
            model,
            Variant("ours 1x4096 + Liger, flex attention", pack_tokens=4096, attn="flex_attention", **fast),
            "bf16",
        )
        attempt(
            model,
            Variant("ours 4x1024 + Liger + compiled layers", pack_tokens=1024, rows=4, compile=True, **fast),
            "bf16",
        )
        attempt(
            model,
            Variant("ours 6x1024 + Liger + compiled layers", pack_tokens=1024, rows=6, compile=True, **fast),
            "bf16",
        )
        attempt(
            model,
            Variant("ours 8x1024 + Liger + compiled layers", pack_tokens=1024, rows=8, compile=True, **fast),
            "bf16",
        )
        del model
        gc.collect()
        torch.cuda.empty_cache()
        table(results["bf16"], "plain HF+PEFT seed shape (mb4, GC)")

    if a.only in ("qlora", "all"):
        try:
            from transformers import AutoModelForCausalLM

            m = qwen3_8b()
            m.save_pretrained("/tmp/q3-8b-random")
            del m
            gc.collect()
            torch.cuda.empty_cache()
            from generation.loader import nf4_config

            q = nf4_config()
            qm = AutoModelForCausalLM.from_pretrained(
                "/tmp/q3-8b-random", quantization_config=q, device_map={"": 0}, dtype=torch.bfloat16
            )
            from peft import prepare_model_for_kbit_training

            qm = prepare_model_for_kbit_training(qm, use_gradient_checkpointing=False)
            qm.config.use_cache = False
            attempt(qm, Variant("plain QLoRA NF4 seed shape (mb4, GC)", baseline=True), "qlora")
            # Our path keeps embeddings / lm_head / norms in bf16 (prepare_model_for_kbit_training upcasts them to fp32:
            # +2.5 GB)
            for p_ in qm.parameters():
                if p_.dtype == torch.float32:
                    p_.data = p_.data.to(torch.bfloat16)
            apply_liger(qm)
            prepare_for_packing(qm)
            fq = dict(packed=True, grad_ckpt=True, dropout=0.0, fused_adamw=True, liger=True)
            attempt(qm, Variant("ours QLoRA 4x1024 + Liger + GC, bf16 head", pack_tokens=1024, rows=4, **fq), "qlora")
            attempt(qm, Variant("ours QLoRA 8x1024 + Liger + GC, bf16 head", pack_tokens=1024, rows=8, **fq), "qlora")
            attempt(qm, Variant("ours QLoRA 12x1024 + Liger + GC, bf16 head", pack_tokens=1024, rows=12, **fq), "qlora")
        except Exception as exc:
            traceback.print_exc()
            results["qlora_error"] = f"{type(exc).__name__}: {exc}"
        table(results["qlora"], "plain QLoRA NF4 seed shape (mb4, GC)")
    path = write_results("gpu-train" + ("" if a.only == "all" else "-" + a.only), results)
    print("wrote", path)


if __name__ == "__main__":
    main()
