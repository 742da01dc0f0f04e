"""Load a base model with the precision the hardware supports, and explain any failure in one sentence."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import ModelConfig
from .embedded import MODEL_ID as EMBEDDED_ID
from .embedded import ensure_converted
from .errors import ModelLoadError

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    name: str  # what the user asked for (hub id / path / embedded id); adapters are matched against it
    device: str
    dtype: str
    quantized: str | None
    memory_bytes: int
    load_seconds: float
    embedded: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def memory_gb(self) -> float:
        return self.memory_bytes / 1e9

    def summary(self) -> str:
        q = f", {self.quantized}" if self.quantized else ""
        where = f"{self.name} on {self.device} ({self.dtype}{q})"
        return f"{where}, {self.memory_gb:.2f} GB, loaded in {self.load_seconds:.1f} s"


def nf4_config():
    """The 4-bit weights the app serves with (`--load-in-4bit`): NF4, double quantization, bf16 compute, the seed's
    QLoRA recipe and the QLoRA paper's defaults. The GPU benches load their NF4 models with it too."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def resolve_device(requested: str, warnings: list[str]) -> str:
    import torch

    if requested in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        warnings.append(
            "CUDA was requested but no CUDA GPU is visible; running on the CPU instead (check drivers / "
            "CUDA_VISIBLE_DEVICES)."
        )
        return "cpu"
    if requested not in ("cpu",) and not requested.startswith("cuda"):
        raise ModelLoadError(f"Unknown device {requested!r}; use auto, cpu or cuda.")
    return requested


def resolve_source(cfg: ModelConfig) -> tuple[str, str, bool]:
    """(path or id to load, display name, embedded?)."""
    spec = (cfg.base_model or "").strip()
    if not spec:
        return str(ensure_converted(cfg.cache_dir)), EMBEDDED_ID, True
    p = Path(spec).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelLoadError(
                f"Model directory {spec} has no config.json; point --base-model at a folder saved with save_pretrained "
                "or at a hub id."
            )
        return str(p), spec, False
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelLoadError(
            f"Model path {spec} does not exist; pass an existing local directory or a hub id like Qwen/Qwen3-8B."
        )
    return spec, spec, False


def load_base(cfg: ModelConfig) -> LoadedModel:
    """Load tokenizer + model. Raises ModelLoadError (one sentence) for anything the user can fix."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    warnings: list[str] = []
    t0 = time.perf_counter()
    path, name, embedded = resolve_source(cfg)
    device = resolve_device(cfg.device, warnings)
    kwargs: dict = {}
    quantized = None
    if cfg.load_in_4bit and device == "cpu":
        warnings.append("4-bit loading needs a CUDA GPU with bitsandbytes; loading in bf16 on the CPU instead.")
    if device.startswith("cuda"):
        if cfg.load_in_4bit:
            try:
                import bitsandbytes  # noqa: F401
            except ImportError as exc:
                raise ModelLoadError(
                    "4-bit loading needs bitsandbytes; install it with `pip install bitsandbytes` or drop "
                    "--load-in-4bit."
                ) from exc
            kwargs["quantization_config"] = nf4_config()
            quantized = "nf4 double-quant"
        dtype = torch.bfloat16
        kwargs["device_map"] = {"": device if ":" in device else "cuda:0"}
        attn = cfg.attn_implementation or "sdpa"
    else:
        dtype = torch.float32 if cfg.cpu_dtype in ("float32", "fp32") else torch.bfloat16
        attn = cfg.attn_implementation or "eager"
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn, **kwargs)
    except ModelLoadError:
        raise
    except (OSError, ValueError) as exc:
        if not embedded and not Path(path).exists() and cfg.offline:
            raise ModelLoadError(
                f"Cannot fetch {name} from the Hugging Face Hub while offline (HF_HUB_OFFLINE=1); download it first or "
                "pass a local directory."
            ) from exc
        if not embedded and not Path(path).exists():
            raise ModelLoadError(
                f"Could not load {name} from the Hugging Face Hub ({type(exc).__name__}); check the id, your network "
                "and HF_TOKEN."
            ) from exc
        raise ModelLoadError(f"Could not load the model at {name}: {str(exc).splitlines()[0][:200]}") from exc
    if device == "cpu":
        model.to("cpu")
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    mem = int(model.get_memory_footprint())
    loaded = LoadedModel(
        model,
        tokenizer,
        name,
        device,
        str(dtype).replace("torch.", ""),
        quantized,
        mem,
        time.perf_counter() - t0,
        embedded,
        warnings,
    )
    log.info("Loaded %s", loaded.summary())
    for w in warnings:
        log.warning(w)
    return loaded
