"""Retrieval for the RAG few-shot variant: encoder (+ disk cache), example index, prompt assembly."""
from .encoder import EMBEDDING_DIM, MODEL_ID, CacheStats, Encoder, get_encoder
from .fewshot import build_fewshot_messages, escape_markdown, format_examples_markdown
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
    "build_fewshot_messages",
    "escape_markdown",
    "format_examples_markdown",
]
