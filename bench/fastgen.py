"""The CUDA generation fast path used by Engine (and measured by bench/gpu_generate.py).

Decoding is memory-bound: each step reads every weight once (16.4 GB for Qwen3-8B in bf16, ~5.5 ms on an H100). The
plain dynamic-cache `generate` adds far more than that in Python and kernel-launch overhead per step. A static KV cache
makes the decode step's shapes fixed, so transformers compiles it (torch.compile, mode reduce-overhead = CUDA graphs).
Prompt lengths are padded up to a bucket so the compiled graph is reused across requests instead of recompiled.

The app no longer uses this path: every request goes through generation/scheduler.py, whose static KV slots and
CUDA-graph decode step do the same job for a whole continuous batch (checked token for token against plain `generate` by
bench/gpu_serve.py before it times anything). Kept for bench/gpu_generate.py's comparison of `generate` variants.
"""

from __future__ import annotations

import os

PROMPT_BUCKET = 64  # left-pad prompts to a multiple of this on CUDA, so static-cache shapes repeat


def is_cuda(model) -> bool:
    dev = getattr(model, "device", None)
    return getattr(dev, "type", str(dev)) == "cuda"


def cuda_generate_kwargs(model) -> dict:
    """Extra `generate` kwargs for the fast path; empty on CPU (where compile time would outweigh the gain)."""
    if not is_cuda(model) or os.environ.get("FAST_GENERATE", "0") != "1":
        return {}
    from transformers.generation.configuration_utils import CompileConfig

    return {"cache_implementation": "static", "compile_config": CompileConfig(fullgraph=False, mode="reduce-overhead")}


def pad_multiple(model) -> int | None:
    return PROMPT_BUCKET if is_cuda(model) else None
