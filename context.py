"""Everything the tabs share, built once at start-up: settings from the environment, the engine (one base model),
retrieval, the stores (votes, reviews, runs) and the admin gate.

This is the only module that reads environment variables. Failures here never stop the app: a model that cannot
load falls back to the embedded default with a banner, and the stores are built whether or not a model loaded, so
the Leaderboard, Export, Data and Training tabs keep working without one.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

# Offline defaults, set before gradio / huggingface_hub are imported: huggingface_hub reads its flags at import.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from arena.battles import ArenaConfig, BattleManager
from arena.store import VoteStore
from generation import Engine, ModelConfig, ModelLoadError, load_base
from retrieval import ExampleIndex, build_or_load, get_encoder
from security import AdminGate
from training.data.review_store import ReviewStore
from training.runner import RunManager

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent
APP_VERSION = "0.1.0"
DEFAULT_CACHE = ROOT / ".cache"  # the one cache default (model conversion, embeddings, indexes)
_TRUE = {"1", "true", "yes", "on"}


def env_flag(value: str | None, default: bool = False) -> bool:
    """The one boolean parser: 1 / true / yes / on (any case) are true, anything else set is false."""
    return default if value is None or not value.strip() else value.strip().lower() in _TRUE


@dataclass
class Settings:
    """Start-up settings. Defaults run offline on the embedded model; ``from_env`` reads the environment and the
    app's flags override it."""

    base_model: str = ""  # hub id or local dir; "" = the embedded SmolLM2-135M-Instruct
    load_in_4bit: bool = False
    device: str = "auto"
    cpu_dtype: str = "bfloat16"
    load_model: bool = True  # False: no model at all (a data / admin box); generation tabs say so
    data_dir: Path = Path("data")
    adapters_dir: Path = Path("adapters")
    cache_dir: Path = DEFAULT_CACHE
    # The seed's RAG baseline retrieves from the high-engagement pairs; the bundled sample set by default.
    rag_dataset: Path = ROOT / "assets" / "sample_pairs.jsonl"
    heldout: Path = ROOT / "assets" / "heldout_tweets.jsonl"
    offline: bool = False  # HF_HUB_OFFLINE
    max_new_tokens: int | None = None  # REPLY_ARENA_MAX_NEW_TOKENS: the reply budget; None = the card default
    host: str = "127.0.0.1"
    port: int = 7860
    admin_password: str | None = field(default=None, repr=False)
    admin_users: set[str] = field(default_factory=set)
    on_space: bool = False
    arena_app_version: str = "dev"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        e = os.environ if env is None else env
        d = cls()
        budget = e.get("REPLY_ARENA_MAX_NEW_TOKENS", "").strip()
        return cls(
            base_model=e.get("BASE_MODEL", d.base_model),
            load_in_4bit=env_flag(e.get("LOAD_IN_4BIT")),
            device=e.get("DEVICE", d.device),
            cpu_dtype=e.get("CPU_DTYPE", d.cpu_dtype),
            data_dir=Path(e.get("DATA_DIR", str(d.data_dir))),
            adapters_dir=Path(e.get("ADAPTERS_DIR", str(d.adapters_dir))),
            cache_dir=Path(e.get("REPLY_ARENA_CACHE", str(d.cache_dir))),
            rag_dataset=Path(e.get("RAG_DATASET", str(d.rag_dataset))),
            offline=env_flag(e.get("HF_HUB_OFFLINE")),
            max_new_tokens=int(budget) if budget else None,
            host=e.get("HOST", d.host),
            port=int(e.get("PORT", str(d.port))),
            admin_password=e.get("ADMIN_PASSWORD") or None,
            admin_users={u.strip().lower() for u in e.get("ADMIN_USERS", "").split(",") if u.strip()},
            on_space=bool(e.get("SPACE_ID")),
            arena_app_version=e.get("ARENA_APP_VERSION", APP_VERSION),
        )

    def model_config(self, **override) -> ModelConfig:
        values = dict(base_model=self.base_model, load_in_4bit=self.load_in_4bit, device=self.device,
                      cpu_dtype=self.cpu_dtype, adapters_dir=self.adapters_dir, cache_dir=self.cache_dir,
                      offline=self.offline)
        return ModelConfig(**{**values, **override})


@dataclass
class AppContext:
    """What every tab builder receives: typed, built before the Blocks."""

    settings: Settings
    gate: AdminGate
    votes: VoteStore
    reviews: ReviewStore
    runs: RunManager
    engine: Engine | None = None
    index: ExampleIndex | None = None
    battles: BattleManager | None = None  # None without a model: nothing can reply
    banners: list[str] = field(default_factory=list)

    def model_banner(self) -> str:
        if self.engine is None:
            return "No model is loaded; generation is unavailable. " + " ".join(self.banners)
        return self.engine.loaded.summary()


def _load_engine(s: Settings, banners: list[str]) -> Engine | None:
    if not s.load_model:
        banners.append("Started without a model (--no-model): Generate and Arena are off; the other tabs work.")
        return None
    try:
        loaded = load_base(s.model_config())
    except ModelLoadError as exc:
        banners.append(str(exc))
        if not s.base_model:
            return None
        banners.append("Falling back to the embedded SmolLM2-135M-Instruct.")
        try:
            loaded = load_base(s.model_config(base_model="", device="cpu", load_in_4bit=False))
        except ModelLoadError as exc2:
            banners.append(str(exc2))
            return None
    banners.extend(loaded.warnings)
    engine = Engine(loaded, s.adapters_dir, max_new_tokens=s.max_new_tokens)
    engine.warm_up()
    return engine


def _load_retrieval(s: Settings, engine: Engine | None, banners: list[str]) -> ExampleIndex | None:
    if engine is None:
        return None  # the index only serves the RAG variant
    try:
        index = build_or_load(s.rag_dataset, get_encoder(s.cache_dir / "embeddings"), fallback_dir=s.cache_dir / "indexes")
    except Exception as exc:  # retrieval is optional: the RAG variant disappears, the rest works
        log.exception("retrieval unavailable")
        banners.append(f"RAG is unavailable: the retrieval index could not be built ({type(exc).__name__}: {str(exc)[:120]}).")
        return None
    engine.retriever = index.search
    return index


def _battles(s: Settings, engine: Engine | None, votes: VoteStore) -> BattleManager | None:
    """Contenders are re-read each battle, so a newly trained adapter joins without a restart."""
    if engine is None:
        return None

    def generate(contender: str, tweet: str):
        r = engine.generate(tweet, contender)
        return r.reply, r.settings

    return BattleManager(votes, engine.variants, generate, config=ArenaConfig(app_version=s.arena_app_version))


def build_context(settings: Settings) -> AppContext:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.adapters_dir.mkdir(parents=True, exist_ok=True)
    gate = AdminGate(password=settings.admin_password, allowed_users=set(settings.admin_users), on_space=settings.on_space)
    # Stores first: they need no model, and the tabs that only read them must work when the model fails.
    votes = VoteStore(settings.data_dir)
    reviews = ReviewStore(settings.data_dir)
    runs = RunManager(settings.data_dir, settings.adapters_dir)
    banners: list[str] = []
    engine = _load_engine(settings, banners)
    index = _load_retrieval(settings, engine, banners)
    return AppContext(settings, gate, votes, reviews, runs, engine, index, _battles(settings, engine, votes), banners)
