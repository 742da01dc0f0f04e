"""Everything the tabs share, built once at start-up: the engine (one base model), retrieval, stores, admin gate.

Failures here never stop the app: a model that cannot load falls back to the embedded default with a banner,
and a missing piece disables only the tab that needs it.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from generation import Engine, ModelConfig, ModelLoadError, load_base
from generation.backends import OpenAIBackend
from security import AdminGate

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent
APP_VERSION = "0.1.0"


@dataclass
class Settings:
    """Start-up settings (CLI flags override env vars). Defaults run offline on the embedded model."""

    base_model: str = field(default_factory=lambda: os.environ.get("BASE_MODEL", ""))
    load_in_4bit: bool = False
    device: str = "auto"
    data_dir: Path = field(default_factory=lambda: Path(os.environ.get("DATA_DIR", "data")))
    adapters_dir: Path = field(default_factory=lambda: Path(os.environ.get("ADAPTERS_DIR", "adapters")))
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get("REPLY_ARENA_CACHE", str(ROOT / ".cache"))))
    # The seed's RAG baseline retrieves from the high-engagement pairs; the bundled sample set by default.
    rag_dataset: Path = field(default_factory=lambda: Path(os.environ.get("RAG_DATASET", str(ROOT / "assets" / "sample_pairs.jsonl"))))
    heldout: Path = ROOT / "assets" / "heldout_tweets.jsonl"
    # local = the model in this process (generation/scheduler.py); openai = an OpenAI-compatible server (vLLM), see generation/backends.py
    backend: str = field(default_factory=lambda: os.environ.get("BACKEND", "local"))
    openai_base_url: str = field(default_factory=lambda: os.environ.get("OPENAI_BASE_URL", ""))
    openai_model: str = field(default_factory=lambda: os.environ.get("OPENAI_MODEL", ""))


@dataclass
class AppContext:
    settings: Settings
    engine: Engine | None
    gate: AdminGate
    banners: list[str] = field(default_factory=list)
    index: object | None = None
    extras: dict = field(default_factory=dict)  # filled by the tabs' own packages (vote store, run manager, ...)

    def model_banner(self) -> str:
        if self.engine is None:
            return "No model is loaded; generation is unavailable. " + " ".join(self.banners)
        return self.engine.loaded.summary()


def _load_engine(s: Settings, banners: list[str]) -> Engine | None:
    if s.backend == "openai":
        try:
            return OpenAIBackend(s.openai_base_url or "http://127.0.0.1:8000/v1", s.openai_model or None)
        except ModelLoadError as exc:
            banners.append(str(exc))
            return None
    cfg = ModelConfig(base_model=s.base_model, load_in_4bit=s.load_in_4bit, device=s.device, adapters_dir=s.adapters_dir, cache_dir=s.cache_dir)
    try:
        loaded = load_base(cfg)
    except ModelLoadError as exc:
        banners.append(str(exc))
        if not s.base_model:
            return None
        banners.append("Falling back to the embedded SmolLM2-135M-Instruct.")
        try:
            loaded = load_base(ModelConfig(base_model="", device="cpu", adapters_dir=s.adapters_dir, cache_dir=s.cache_dir))
        except ModelLoadError as exc2:
            banners.append(str(exc2))
            return None
    banners.extend(loaded.warnings)
    engine = Engine(loaded, s.adapters_dir)
    engine.warm_up()
    return engine


def _load_retrieval(s: Settings, engine: Engine | None, banners: list[str]):
    try:
        from retrieval import build_or_load, get_encoder

        index = build_or_load(s.rag_dataset, get_encoder(s.cache_dir / "embeddings"), fallback_dir=s.cache_dir / "indexes")
    except Exception as exc:  # retrieval is optional: the RAG variant disappears, the rest works
        log.exception("retrieval unavailable")
        banners.append(f"RAG is unavailable: the retrieval index could not be built ({type(exc).__name__}: {str(exc)[:120]}).")
        return None
    if engine is not None:
        engine.retriever = index.search
    return index


def build_context(settings: Settings) -> AppContext:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.adapters_dir.mkdir(parents=True, exist_ok=True)
    banners: list[str] = []
    engine = _load_engine(settings, banners)
    index = _load_retrieval(settings, engine, banners)
    return AppContext(settings, engine, AdminGate(), banners, index)
