"""Configuration dataclasses for model loading and sampling, with the source of each default.

No env reads here: context.Settings.from_env() is the one place the app reads the environment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path


@dataclass
class SamplingConfig:
    """Sampling settings. Defaults: Qwen3 model card, non-thinking mode (0.7 / 0.8 / 20 / 0)."""

    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    min_p: float = 0.0
    # A reply is <= 280 chars (~70 tokens); 96 leaves room for the end-of-turn token.
    max_new_tokens: int = 96
    # Qwen3 card leaves it off (1.0); small models (SmolLM2) loop without a mild penalty.
    repetition_penalty: float = 1.0
    do_sample: bool = True
    seed: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# Qwen3 model card, thinking mode: 0.6 / 0.95 / 20 / 0; thinking needs a much larger token budget.
THINKING_SAMPLING = SamplingConfig(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0, max_new_tokens=1024)
NON_THINKING_SAMPLING = SamplingConfig()


def default_sampling(thinking: bool, small_model: bool = False, max_new_tokens: int | None = None) -> SamplingConfig:
    """Card defaults for the mode. The embedded 135M model gets a repetition penalty (it loops otherwise) and 60 new
    tokens:
    its replies past ~60 tokens are rambling cut at 280 chars anyway, and 60 tokens is ~3 s on a 2-core CPU
    (bench/cpu_generate.py)."""
    base = THINKING_SAMPLING if thinking else NON_THINKING_SAMPLING
    if max_new_tokens and not thinking:  # the app's reply budget (REPLY_ARENA_MAX_NEW_TOKENS, read by context)
        base = replace(base, max_new_tokens=int(max_new_tokens))
    if small_model:
        return replace(base, repetition_penalty=1.2, max_new_tokens=min(base.max_new_tokens, 60))
    return replace(base)


@dataclass
class ModelConfig:
    """How to load the base model. Empty base_model = the embedded SmolLM2-135M-Instruct (offline default)."""

    base_model: str = ""
    # 4-bit NF4 double-quant with bf16 compute: the seed's QLoRA recipe (and the QLoRA paper's defaults).
    load_in_4bit: bool = False
    device: str = "auto"  # auto | cpu | cuda
    # bf16 is fastest for the embedded model on this CPU (measured: bench/cpu_generate.py); fp32 is the safe fallback.
    cpu_dtype: str = "bfloat16"
    adapters_dir: Path = Path("adapters")
    cache_dir: Path = Path(".cache")
    # HF_HUB_OFFLINE: a hub id that is not on disk fails with a clear message instead of a network error.
    offline: bool = False
    # Eager attention: fastest for short prompts on CPU (measured); sdpa on CUDA.
    attn_implementation: str | None = None
