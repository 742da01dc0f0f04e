"""Model loading, chat templating, and generation for every variant (base / RAG / LoRA) from one base model."""

from .config import ModelConfig, SamplingConfig, default_sampling
from .engine import Engine, GenerationResult, StreamEvent
from .errors import AdapterError, ModelLoadError
from .loader import LoadedModel, load_base
from .variants import BASE, LORA_PREFIX, RAG, adapter_name, lora_variant

__all__ = [
    "ModelConfig",
    "SamplingConfig",
    "default_sampling",
    "Engine",
    "GenerationResult",
    "StreamEvent",
    "BASE",
    "RAG",
    "LORA_PREFIX",
    "adapter_name",
    "lora_variant",
    "AdapterError",
    "ModelLoadError",
    "LoadedModel",
    "load_base",
]
