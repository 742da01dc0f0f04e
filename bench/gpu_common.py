"""Shared pieces of the GPU benchmarks: the Qwen3-8B shape with random weights, synthetic tweet-length examples, timing."""
from __future__ import annotations

import json
import os
import random
import subprocess
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QWEN3_8B = dict(vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                num_key_value_heads=8, head_dim=128, max_position_embeddings=40960, rope_theta=1e6, rms_norm_eps=1e-6,
                tie_word_embeddings=False)
N_MATMUL = 7.57e9  # matmul parameters incl. lm_head (GPU.md); LoRA training ~ 4N FLOPs/token without checkpointing, 6N with


def qwen3_8b(dtype=None, layers: int | None = None):
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    cfg = Qwen3Config(**{**QWEN3_8B, **({"num_hidden_layers": layers} if layers else {})})
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype or torch.bfloat16, attn_implementation="sdpa")
    return model


def tweet_examples(n: int, seed: int = 0, vocab: int = 151936) -> list[dict]:
    """Chat-formatted tweet + reply lengths: 48-192 tokens, the reply (trained part) 12-64 tokens at the end."""
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        total = rnd.randint(48, 192)
        reply = rnd.randint(12, min(64, total - 30))
        ids = [rnd.randrange(1000, vocab - 1000) for _ in range(total)]
        out.append({"input_ids": ids, "labels": [-100] * (total - reply) + ids[total - reply:]})
    return out


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def gpu_kind() -> str:
    try:
        n = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.count("GPU ")
    except OSError:
        n = 0
    name = device_name().lower()
    kind = "h200" if "h200" in name else "h100" if "h100" in name else name.replace(" ", "-")
    return f"nvidia-{kind}-x{n}"


def write_results(prefix: str, payload: dict) -> Path:
    payload = {"date": date.today().isoformat(), "device": device_name(), "kind": gpu_kind(), **payload}
    out_dir = Path(os.environ.get("OUT", ROOT / "bench" / "results"))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{prefix}-{gpu_kind()}-{date.today().isoformat()}.json"
    path.write_text(json.dumps(payload, indent=2))
    return path


class Timer:
    def __enter__(self):
        import torch

        torch.cuda.synchronize()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import torch

        torch.cuda.synchronize()
        self.s = time.perf_counter() - self.t0
