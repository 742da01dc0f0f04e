"""DPO through the product path on the Qwen3-8B shape: votes in a real VoteStore -> arena.preferences -> `python -m
training.dpo`.

Method (as GPU.md's SFT trainer numbers): the random-weight Qwen3-8B shape is saved with the tests' Qwen3-style BPE
tokenizer; a parent "SFT" adapter (r16/a16, the seed's 7 modules, small random B so the reference differs from the base)
is saved beside it; synthetic votes on the sample tweets are cleaned into a preference dataset; then each variant runs
the
real trainer CLI exactly as the Training tab's runner does. Steady pairs/s comes from trainer_log.jsonl after the first
third
of the steps (16 pairs per optimizer step: micro-batch 4 x accumulation 4, the seed's shape); with fast_path=on the
reference log-probs are computed once before step 1 and that one-off cost is reported apart (`reference_pass_s`). Peak
GiB is
torch.cuda.max_memory_allocated in the trainer process.

    python3 bench/gpu_dpo.py [--pairs 320] [--steps 9] [--variants bf16,qlora] [--tiny]   (--tiny: CPU smoke run)
    python3 bench/gpu_dpo.py --variants bf16,bf16-x2,qlora-x2     (-x2: GPUs 0 and 1, DDP, through the same launcher)

Writes bench/results/gpu-dpo-<kind>-<date>.json (or $OUT/...).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (ROOT, ROOT / "tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from arena.preferences import CleaningConfig, build_from_store  # noqa: E402
from arena.store import VoteRecord, VoteStore  # noqa: E402

SFT_REFERENCE = {  # GPU.md, nvidia-h200 2026-11-30, the SFT trainer through the product path (tokens/s, not pairs/s)
    "bf16 fast path auto": {"steady_tokens_per_s": 7063, "s_per_step": 0.53},
    "bf16 fast_path off (seed recipe)": {"steady_tokens_per_s": 1470, "s_per_step": 2.49},
    "QLoRA NF4 fast path auto": {"steady_tokens_per_s": 5011, "s_per_step": 0.74},
    "QLoRA NF4 fast_path off": {"steady_tokens_per_s": 1120, "s_per_step": 3.27},
}
VARIANTS = {
    "bf16": {"load_in_4bit": False, "gradient_checkpointing": False},
    "qlora": {"load_in_4bit": True, "gradient_checkpointing": True},
}


def build_model(out: Path, tiny: bool) -> Path:
    """Random-weight model + tokenizer saved where the trainer loads it; a parent adapter in out/adapters/sft-v1."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tests.support.tiny_qwen3 import build_model as tiny_model
    from tests.support.tiny_qwen3 import build_tokenizer
    from training.config import DEFAULT_TARGETS

    base = out / "q3"
    tok = build_tokenizer(base)
    if tiny:
        model = tiny_model(tok, init_std=0.2)
    else:
        from bench.gpu_common import qwen3_8b

        model = qwen3_8b(torch.bfloat16)
    model.save_pretrained(str(base))
    pm = get_peft_model(
        model,
        LoraConfig(r=16, lora_alpha=16, lora_dropout=0.1, target_modules=list(DEFAULT_TARGETS), task_type="CAUSAL_LM"),
    )
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 1e-3)
    pm.peft_config["default"].base_model_name_or_path = str(base)
    pm.save_pretrained(str(out / "adapters" / "sft-v1"))
    del pm, model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return base


def build_votes(out: Path, n_pairs: int) -> dict:
    """n_pairs votes on distinct sample tweets from 16 voters; the sample reply beats another tweet's reply."""
    rows = [json.loads(x) for x in (ROOT / "assets" / "sample_pairs.jsonl").read_text().splitlines() if x.strip()]
    rnd = random.Random(0)
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    with VoteStore(out / "data") as store:
        for k in range(n_pairs):
            r, other = rows[k % len(rows)], rows[(k * 7 + 3) % len(rows)]
            left = rnd.random() < 0.5
            a, b = (r["reply"], other["reply"]) if left else (other["reply"], r["reply"])
            store.add_vote(
                VoteRecord(
                    battle_id=f"g{k}",
                    tweet=f"{r['tweet']} #{k}",
                    contender_a="lora:sft-v1" if left else "base",
                    contender_b="base" if left else "lora:sft-v1",
                    reply_a=a,
                    reply_b=b,
                    vote="a" if left else "b",
                    session_hash=f"s{k % 16}",
                    client_hash=f"c{k % 16}",
                    app_version="bench",
                    created_at=(t0 + timedelta(minutes=k)).isoformat(),
                )
            )
        return build_from_store(store, out / "prefs", CleaningConfig(daily_cap=10_000, eval_fraction=0.05))


def tokens_per_pair(base: Path, prefs: Path) -> float:
    """Tokens the trainer processes per pair: prompt + chosen, prompt + rejected (two sequences)."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base))
    ds = load_from_disk(str(prefs))["train"]
    n = 0
    for r in ds.select(range(min(64, len(ds)))):
        for side in ("chosen", "rejected"):
            text = tok.apply_chat_template(r["prompt"] + r[side], tokenize=False, enable_thinking=False)
            n += len(tok(text, add_special_tokens=False)["input_ids"])
    return n / min(64, len(ds))


def run_variant(name: str, out: Path, base: Path, steps: int, tiny: bool, timeout: float) -> dict:
    """One trainer run; a name ending in -x2 runs on GPUs 0 and 1 (DDP, one process each) through the same launcher
    the Training tab's runner uses (training.launch.launch_spec)."""
    from training.config import TrainConfig
    from training.launch import CPU_PROCESSES_ENV, launch_spec

    variant, two = (name[: -len("-x2")], True) if name.endswith("-x2") else (name, False)
    run_dir = out / "runs" / f"dpo-{name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig.from_dict(
        {
            **VARIANTS[variant],
            "gpus": [0, 1] if two and not tiny else None,
            "kind": "dpo",
            "base_model": str(base),
            "parent_adapter": str(out / "adapters" / "sft-v1"),
            "adapters_dir": str(out / "adapters"),
            "output_dir": str(out / "runs"),
            "dataset": str(out / "prefs"),
            "run_name": f"dpo-{name}",
            "min_pairs": 50,
            "micro_batch_size": 4,
            "grad_accum": 4,
            "max_steps": steps,
            "logging_steps": 1,
            "eval_steps": 1000,
            "save_steps": 1000,
            "learning_rate": 5e-5,
            "warmup_ratio": 0.0,
            "cache_dir": str(out / "cache"),
            "wandb_project": "",
            "cpu_dtype": "float32" if tiny else "bfloat16",
        }
    )
    cfg.to_yaml(run_dir / "run.yaml")
    t0 = time.time()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
        **({CPU_PROCESSES_ENV: "2"} if two and tiny else {}),  # the CPU smoke run: two gloo processes
    }
    argv, extra = launch_spec(cfg, run_dir, env=env)
    env.update(extra)
    with open(run_dir / "train.log", "w") as log:
        try:
            rc = subprocess.run(
                argv,
                cwd=str(ROOT),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            ).returncode
        except subprocess.TimeoutExpired:  # recorded, and the next variant still runs
            rc = "timeout"
    wall = time.time() - t0
    if rc != 0:
        return {
            "variant": name,
            "ok": False,
            "rc": rc,
            "wall_s": round(wall, 1),
            "log_tail": (run_dir / "train.log").read_text()[-3000:],
        }
    metrics = json.loads((run_dir / "metrics.json").read_text())
    recs = [json.loads(x) for x in (run_dir / "trainer_log.jsonl").read_text().splitlines() if x.strip()]
    train = [r for r in recs if r.get("event") == "train"]
    begin = next(r for r in recs if r.get("event") == "begin")
    k = max(1, len(train) // 3)
    steady_s_per_step = (train[-1]["time"] - train[k - 1]["time"]) / max(1, train[-1]["step"] - train[k - 1]["step"])
    world = int(metrics.get("world_size") or 1)
    per_rank_accum = -(-cfg.grad_accum // world)
    pairs_per_step = cfg.micro_batch_size * per_rank_accum * world
    return {
        "variant": name,
        "ok": True,
        "config": {
            **VARIANTS[variant],
            "micro_batch": cfg.micro_batch_size,
            "grad_accum_per_rank": per_rank_accum,
            "processes": world,
            "steps": steps,
        },
        "steady_s_per_step": round(steady_s_per_step, 3),
        "steady_pairs_per_s": round(pairs_per_step / steady_s_per_step, 2),
        "reference_pass_s": round(train[0]["time"] - begin["time"], 1)
        if metrics.get("precomputed_reference")
        else None,
        "peak_gib": metrics.get("peak_gib"),
        "peak_gib_per_rank": metrics.get("peak_gib_per_rank"),
        "trainer_wall_s": round(wall, 1),
        "first_margin": metrics.get("first_margin"),
        "last_margin": train[-1].get("rewards/margins"),
        "eval_rewards/margins": metrics.get("eval_rewards/margins"),
        "precomputed_reference": metrics.get("precomputed_reference"),
        "adapter": metrics.get("run_id"),
        "lineage": json.loads((out / "adapters" / f"dpo-{name}" / "lineage.json").read_text())["parent_adapter"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=320)
    ap.add_argument("--steps", type=int, default=9)
    ap.add_argument("--variants", default="bf16,qlora")
    ap.add_argument(
        "--tiny", action="store_true", help="tiny random Qwen3 on the CPU (checks the script, no speed claim)"
    )
    ap.add_argument("--work", default="/tmp/gpu-dpo")
    ap.add_argument("--timeout", type=float, default=150)
    ns = ap.parse_args(argv)
    import torch

    out = Path(ns.work)
    t0 = time.time()
    base = build_model(out, ns.tiny)
    t_model = time.time() - t0
    prov = build_votes(out, ns.pairs)
    tpp = tokens_per_pair(base, out / "prefs")
    print(f"model saved in {t_model:.0f} s; {prov['n_train']} train pairs ({tpp:.0f} tokens per pair)", flush=True)
    results = []
    for v in ns.variants.split(","):
        r = run_variant(v, out, base, ns.steps, ns.tiny, ns.timeout)
        if r.get("ok"):
            r["steady_tokens_per_s"] = round(r["steady_pairs_per_s"] * tpp, 1)
        results.append(r)
        print(
            json.dumps(
                {
                    k: r.get(k)
                    for k in (
                        "variant",
                        "ok",
                        "steady_pairs_per_s",
                        "steady_tokens_per_s",
                        "peak_gib",
                        "reference_pass_s",
                        "first_margin",
                        "last_margin",
                        "rc",
                    )
                }
            ),
            flush=True,
        )
        if not r.get("ok"):
            print(r["log_tail"], flush=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    kind = "tiny-cpu" if ns.tiny else ("nvidia-h200" if "H200" in device else device.replace(" ", "-").lower())
    if any(v.endswith("-x2") for v in ns.variants.split(",")) and not ns.tiny:
        kind += "-x2"
    payload = {
        "bench": "gpu_dpo",
        "date": date.today().isoformat(),
        "device": device,
        "kind": kind,
        "model": "tiny random Qwen3" if ns.tiny else "Qwen3-8B shape, random weights, bf16",
        "tokenizer": "tests' Qwen3-style BPE (tokens ~2x longer than Qwen3's)",
        "n_train_pairs": prov["n_train"],
        "tokens_per_pair": round(tpp, 1),
        "pairs_per_optimizer_step": 16,
        "results": results,
        "sft_reference_h200": SFT_REFERENCE,
        "speed_tricks": "bf16 autocast, fused AdamW, dropout off (TRL disable_dropout), "
        "reference = the parent-adapter copy run live each step (precompute is opt-in, fast_path=on), no gradient "
        "checkpointing "
        "for bf16; packing and "
        "Liger's fused cross-entropy do not apply to TRL's chosen/rejected batches as they are",
        "wall_s": round(time.time() - t0, 1),
    }
    dest = Path(os.environ.get("OUT") or ROOT / "bench" / "results")
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"gpu-dpo-{kind}-{payload['date']}.json"
    path.write_text(json.dumps(payload, indent=1))
    print(f"wrote {path}")
    return 0 if all(r.get("ok") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
