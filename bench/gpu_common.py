"""Shared pieces of the GPU benchmarks: the Qwen3-8B shape with random weights, synthetic tweet-length examples, the
padded (plain) and packed (fast path) batch makers, timing. bench/gpu_train.py and bench/gpu_train_ddp.py both import
from here and never from each other."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from datetime import date
from pathlib import Path

from training.fastpath import PackedCollator, pack_examples

ROOT = Path(__file__).resolve().parent.parent
QWEN3_8B = dict(
    vocab_size=151936,
    hidden_size=4096,
    intermediate_size=12288,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    max_position_embeddings=40960,
    rope_theta=1e6,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # the seed's 7 LoRA modules
N_MATMUL = (
    7.57e9  # matmul parameters incl. lm_head (GPU.md); LoRA training ~ 4N FLOPs/token without checkpointing, 6N with
)


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
        out.append({"input_ids": ids, "labels": [-100] * (total - reply) + ids[total - reply :]})
    return out


def padded_batches(examples, mb, pad_id=0):
    """The plain path: right-padded micro-batches of `mb` examples; yields (batch, real tokens)."""
    import torch

    for i in range(0, len(examples) - mb + 1, mb):
        chunk = examples[i : i + mb]
        w = max(len(e["input_ids"]) for e in chunk)
        yield (
            {
                "input_ids": torch.tensor([e["input_ids"] + [pad_id] * (w - len(e["input_ids"])) for e in chunk]),
                "attention_mask": torch.tensor(
                    [[1] * len(e["input_ids"]) + [0] * (w - len(e["input_ids"])) for e in chunk]
                ),
                "labels": torch.tensor([e["labels"] + [-100] * (w - len(e["labels"])) for e in chunk]),
            },
            sum(len(e["input_ids"]) for e in chunk),
        )


def packed_batches(examples, pack_tokens, rows_per_batch=1):
    """The fast path: packed rows (training/fastpath.py), `rows_per_batch` per micro-batch; yields (batch, real
    tokens)."""
    rows = pack_examples(examples, pack_tokens)
    coll = PackedCollator()
    for i in range(0, len(rows) - rows_per_batch + 1, rows_per_batch):
        chunk = rows[i : i + rows_per_batch]
        yield coll(chunk), sum(r["n_real"] for r in chunk)


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
