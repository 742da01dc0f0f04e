"""Retrieval for the RAG few-shot variant: encoder (+ disk cache) and the example index. Returns examples only;
the few-shot prompt is generation.prompts, the UI rendering generation.present."""

from .encoder import EMBEDDING_DIM, MODEL_ID, CacheStats, Encoder, get_encoder
from .index import DEFAULT_DATASET, Example, ExampleIndex, RetrievalConfig, Retrieved, build_or_load

__all__ = [
    "EMBEDDING_DIM",
    "MODEL_ID",
    "CacheStats",
    "Encoder",
    "get_encoder",
    "DEFAULT_DATASET",
    "Example",
    "ExampleIndex",
    "RetrievalConfig",
    "Retrieved",
    "build_or_load",
]
