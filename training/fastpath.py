"""The CUDA fast path for LoRA training on tweet-length examples.

Tweet + reply examples are 48-192 tokens; padded micro-batches waste most of the GPU on padding and tiny matmuls. We
pack
whole examples into fixed-size rows (first-fit decreasing), restart position ids at each example, and pass no attention
mask: transformers then builds a block-diagonal causal mask from the position ids
(masking_utils.find_packed_sequence_indices),
so examples never attend to each other and the loss equals the unpacked batch's loss. Rows have a fixed token budget,
which also gives static shapes (good for kernels and torch.compile). Liger kernels (RMSNorm, RoPE, SwiGLU, fused linear
cross-entropy, so the 151,936-wide logits are never materialized) are applied when the package is installed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

log = logging.getLogger(__name__)


@dataclass
class FastPathConfig:
    """Defaults measured in bench/gpu_train.py on an H100 (see bench/results)."""

    pack_tokens: int = 4096  # tokens per packed row; 4096 fits an 8B bf16 LoRA step without checkpointing on 80 GB
    rows_per_batch: int = 1
    liger: bool = True  # fused kernels when liger-kernel is importable
    attn_implementation: str = "sdpa"  # block-diagonal mask from position ids; "flex_attention" skips masked blocks
    fused_adamw: bool = True


def pack_examples(examples: Sequence[dict], pack_tokens: int, pad_token_id: int = 0) -> list[dict]:
    """First-fit decreasing bin packing of whole examples into rows of exactly `pack_tokens` tokens.

    Each row: input_ids, labels (-100 on prompt, padding and the first token of every example, so no example is trained
    to predict the next one), position_ids restarting at 0 per example. Padding at the row's end is one more "example"
    of pad tokens whose positions restart too, so it is masked off like any other document.
    """
    too_long = [i for i, e in enumerate(examples) if len(e["input_ids"]) > pack_tokens]
    if too_long:
        raise ValueError(
            f"{len(too_long)} examples are longer than pack_tokens={pack_tokens}; raise pack_tokens or max_seq_len."
        )
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    bins: list[list[int]] = []
    space: list[int] = []
    for i in order:
        n = len(examples[i]["input_ids"])
        for b, free in enumerate(space):
            if free >= n:
                bins[b].append(i)
                space[b] -= n
                break
        else:
            bins.append([i])
            space.append(pack_tokens - n)
    rows = []
    for members in bins:
        ids, labels, pos = [], [], []
        for i in members:
            e = examples[i]
            n = len(e["input_ids"])
            ids.extend(e["input_ids"])
            lab = list(e["labels"])
            lab[0] = -100
            labels.extend(lab)
            pos.extend(range(n))
        pad = pack_tokens - len(ids)
        ids.extend([pad_token_id] * pad)
        labels.extend([-100] * pad)
        pos.extend(range(pad))
        rows.append({"input_ids": ids, "labels": labels, "position_ids": pos, "n_real": pack_tokens - pad})
    return rows


class PackedCollator:
    """Stacks packed rows; no attention_mask on purpose (the mask comes from position_ids)."""

    def __call__(self, rows: Sequence[dict]) -> dict:
        import torch

        return {
            k: torch.tensor([r[k] for r in rows], dtype=torch.long) for k in ("input_ids", "labels", "position_ids")
        }


def prepare_for_packing(model) -> None:
    """No KV cache during training: with a cache object present transformers skips packed-sequence detection
    and examples would attend to each other (checked in tests/test_fastpath.py)."""
    model.config.use_cache = False
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.use_cache = True  # generation after training still uses the cache


def liger_available() -> bool:
    try:
        import liger_kernel.transformers  # noqa: F401
    except Exception:
        return False
    return True


def apply_liger(model) -> bool:
    """Patch a loaded Qwen3/Llama-family model in place with Liger kernels; returns whether it was applied."""
    if not liger_available():
        log.info("liger-kernel not installed: training without fused kernels")
        return False
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(
        model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=True
    )
    return True


def packing_efficiency(rows: Sequence[dict]) -> float:
    total = sum(len(r["input_ids"]) for r in rows)
    return sum(r["n_real"] for r in rows) / total if total else 0.0


@dataclass
class FastPlan:
    """What the trainer turns on for this run (decided from the config and the hardware)."""

    enabled: bool = False
    pack_tokens: int = 1024
    rows: int = 0
    liger: bool = False
    fused_adamw: bool = False
    compile: bool = False


def fast_plan(cfg, on_cuda: bool) -> FastPlan:
    """auto = the fast path on CUDA only (CPU runs keep the plain, well-tested padded path); on/off force it."""
    mode = str(getattr(cfg, "fast_path", "auto")).lower()
    enabled = mode in ("on", "true", "1") or (mode == "auto" and on_cuda)
    if not enabled:
        return FastPlan()
    return FastPlan(
        True,
        int(cfg.pack_tokens),
        int(cfg.pack_rows),
        liger=on_cuda,
        fused_adamw=on_cuda,
        compile=on_cuda and bool(getattr(cfg, "compile_layers", False)),
    )


def auto_rows(examples: Sequence[dict], cfg, pack_tokens: int) -> int:
    """Rows per step so one optimizer step sees about the seed's examples (micro_batch x grad_accum) worth of tokens."""
    if not examples:
        return 1
    mean_len = sum(len(e["input_ids"]) for e in examples) / len(examples)
    want_tokens = mean_len * cfg.micro_batch_size * cfg.grad_accum
    return max(1, round(want_tokens / pack_tokens))


def keep_bf16(model) -> None:
    """prepare_model_for_kbit_training upcasts embeddings, lm_head and norms to fp32 (+2.5 GB on Qwen3-8B); the fast
    path keeps them in bf16 (Liger's kernels run in bf16), which is what lets QLoRA batch 8k tokens under 12 GiB."""
    import torch

    for p in model.parameters():
        if p.dtype == torch.float32:
            p.data = p.data.to(torch.bfloat16)
