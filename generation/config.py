"""Configuration dataclasses for model loading and sampling, with the source of each default."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path


@dataclass
class SamplingConfig:
    """Sampling settings. Defaults: Qwen3 model card, non-thinking mode (0.7 / 0.8 / 20 / 0)."""

    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    min_p: float = 0.0
    # A reply is <= 280 chars (~70 tokens); 96 leaves room for the end-of-turn token.
    max_new_tokens: int = field(default_factory=lambda: int(os.environ.get("REPLY_ARENA_MAX_NEW_TOKENS", "96")))
    # Qwen3 card leaves it off (1.0); small models (SmolLM2) loop without a mild penalty.
    repetition_penalty: float = 1.0
    do_sample: bool = True
    seed: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# Qwen3 model card, thinking mode: 0.6 / 0.95 / 20 / 0; thinking needs a much larger token budget.
THINKING_SAMPLING = SamplingConfig(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0, max_new_tokens=1024)
NON_THINKING_SAMPLING = SamplingConfig()


def default_sampling(thinking: bool, small_model: bool = False) -> SamplingConfig:
    """Card defaults for the mode. The embedded 135M model gets a repetition penalty (it loops otherwise) and 60 new tokens:
    its replies past ~60 tokens are rambling cut at 280 chars anyway, and 60 tokens is ~3 s on a 2-core CPU (bench/cpu_generate.py)."""
    base = THINKING_SAMPLING if thinking else NON_THINKING_SAMPLING
    if small_model:
        return replace(base, repetition_penalty=1.2, max_new_tokens=min(base.max_new_tokens, 60))
    return replace(base)


def _env_bool(name: str, default: bool = False) -> bool:
    v = os.environ.get(name)
    return default if v is None else v.strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class ModelConfig:
    """How to load the base model. Empty base_model = the embedded SmolLM2-135M-Instruct (offline default)."""

    base_model: str = field(default_factory=lambda: os.environ.get("BASE_MODEL", ""))
    # 4-bit NF4 double-quant with bf16 compute: the seed's QLoRA recipe (and the QLoRA paper's defaults).
    load_in_4bit: bool = field(default_factory=lambda: _env_bool("LOAD_IN_4BIT"))
    device: str = field(default_factory=lambda: os.environ.get("DEVICE", "auto"))  # auto | cpu | cuda
    # bf16 is fastest for the embedded model on this CPU (measured: bench/cpu_generate.py); fp32 is the safe fallback.
    cpu_dtype: str = field(default_factory=lambda: os.environ.get("CPU_DTYPE", "bfloat16"))
    adapters_dir: Path = field(default_factory=lambda: Path(os.environ.get("ADAPTERS_DIR", "adapters")))
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get("REPLY_ARENA_CACHE", ".cache")))
    # Eager attention: fastest for short prompts on CPU (measured); sdpa on CUDA.
    attn_implementation: str | None = None
