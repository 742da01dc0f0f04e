"""Model loading, chat templating, and generation for every variant (base / RAG / LoRA) from one base model."""
from .config import ModelConfig, SamplingConfig, default_sampling
from .engine import BASE, LORA_PREFIX, RAG, Engine, GenerationResult, StreamEvent
from .errors import AdapterError, ModelLoadError
from .loader import LoadedModel, load_base

__all__ = ["ModelConfig", "SamplingConfig", "default_sampling", "Engine", "GenerationResult", "StreamEvent", "BASE", "RAG",
           "LORA_PREFIX", "AdapterError", "ModelLoadError", "LoadedModel", "load_base"]
