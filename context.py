"""Everything the tabs share, built once at start-up: settings from the environment, the engine (one base model),
retrieval, the stores (votes, reviews, runs) and the admin gate.

This is the only module of the app that reads environment variables (Settings.from_env); everything else gets its
settings passed down. Only the entry points of other processes (command lines, the trainer's main) read their own
environment; tests/unit/test_env_reads.py holds that list. Failures here never stop the app: a model that cannot
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
# The Hub is off unless HF_HUB_OFFLINE=0 says otherwise: the embedded model and the bundled sentence encoder need no
# network (this was retrieval/encoder.py's import-time default; a library module no longer writes the environment).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# uvicorn would otherwise rewrite the client address from X-Forwarded-For for loopback peers; which forwarded entry
# to believe is decided by --behind-proxy (security/client.py), not by where the request happens to come from.
os.environ.setdefault("FORWARDED_ALLOW_IPS", "")

from arena.abuse import SALT_ENV
from arena.battles import ArenaConfig, BattleManager
from arena.pool import BattlePool
from arena.store import VoteStore
from common.flags import env_flag
from common.tracking import DEFAULT_PROJECT, wandb_mode
from generation import Engine, ModelConfig, ModelLoadError, load_base
from generation.backends import OpenAIBackend
from generation.scheduler import SchedulerConfig
from retrieval import ExampleIndex, build_or_load, get_encoder
from security import AdminGate, SecurityDB, VisitorLimits, client_address
from security.ratelimit import PersistentRateLimiter
from training.data.apify import APIFY_URL
from training.data.collect import X_API_URL
from training.data.review_store import ReviewStore
from training.runner import RunManager

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent
APP_VERSION = "0.1.0"
DEFAULT_CACHE = ROOT / ".cache"  # the one cache default (model conversion, embeddings, indexes)


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
    offline: bool = False  # HF_HUB_OFFLINE: model loading, and publishing refuses to start
    max_new_tokens: int | None = None  # REPLY_ARENA_MAX_NEW_TOKENS: the reply budget; None = the card default
    host: str = "127.0.0.1"
    port: int = 7860
    # Secrets: repr=False keeps them out of any printed or logged Settings; they are never logged.
    admin_password: str | None = field(default=None, repr=False)
    anthropic_api_key: str | None = field(default=None, repr=False)  # ANTHROPIC_API_KEY: the Claude judge
    hf_token: str | None = field(default=None, repr=False)  # HF_TOKEN (or HUGGING_FACE_HUB_TOKEN): publishing
    x_bearer_token: str | None = field(default=None, repr=False)  # X_BEARER_TOKEN: the Data tab's X collector
    apify_token: str | None = field(default=None, repr=False)  # APIFY_TOKEN: the Data tab's Apify runs
    # ARENA_SALT: the salt of the voter hashes; None = a random one persisted in the data dir (arena/abuse.py)
    arena_salt: str | None = field(default=None, repr=False)
    admin_users: set[str] = field(default_factory=set)
    on_space: bool = False
    arena_app_version: str = "dev"
    # Proxies in front of the app whose X-Forwarded-For entry is believed (a Space has one); 0 = use the socket peer.
    proxy_hops: int = 0  # BEHIND_PROXY (1 on a Space)
    max_upload_mb: int = 20  # MAX_UPLOAD_MB; bigger files: a server path
    gradio_temp_dir: str = ""  # GRADIO_TEMP_DIR: where Gradio puts uploads; error messages never show it
    generate_per_minute: int = 10  # GENERATE_PER_MINUTE, per address
    battles_per_minute: int = 6  # BATTLES_PER_MINUTE, per address
    votes_per_minute: int = 20  # VOTES_PER_MINUTE, per address and session
    generate_per_day: int = 300  # GENERATE_PER_DAY, per address
    battles_per_day: int = 180  # BATTLES_PER_DAY, per address
    # local = the model in this process (generation/scheduler.py); openai = an OpenAI-compatible server (vLLM),
    # see generation/backends.py
    backend: str = "local"  # BACKEND
    openai_base_url: str = ""  # OPENAI_BASE_URL
    openai_model: str = ""  # OPENAI_MODEL; empty = the first model the server lists
    openai_api_key: str | None = field(default=None, repr=False)  # OPENAI_API_KEY: that server's key, if it has one
    # ARENA_POOL: auto = pre-generated battle pool on when the model runs on a GPU (filling 72 tweets x every
    # contender is minutes of CPU on a 2-core Space); on / off force it.
    arena_pool: str = "auto"
    # The generation scheduler's limits (REPLY_ARENA_MAX_WAITING, REPLY_ARENA_KV, REPLY_ARENA_CUDA_GRAPH=0,
    # REPLY_ARENA_PROFILE=1); field help in generation/scheduler.py.
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    # W&B for Evaluate's reports and the System tab: WANDB_PROJECT, and the mode WANDB_MODE / WANDB_API_KEY give
    # (common.tracking.wandb_mode; the key itself stays in the environment, where wandb and the trainer read it).
    wandb_project: str = DEFAULT_PROJECT
    wandb_mode: str = "offline"
    # Collection APIs (training/data/collect.py, apify.py); tests point them at local servers.
    x_api_base_url: str = X_API_URL  # X_API_BASE_URL
    apify_api_url: str = APIFY_URL  # APIFY_API_URL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        e = os.environ if env is None else env
        d = cls()
        budget = e.get("REPLY_ARENA_MAX_NEW_TOKENS", "").strip()
        # What Gradio itself takes for a Space (SYSTEM=spaces + SPACE_ID). A SPACE_ID alone (a local copy of a
        # Space's settings) would make Gradio mock HF sign-in, which needs a logged-in HF CLI, and stop the app.
        on_space = e.get("SYSTEM") == "spaces" and bool(e.get("SPACE_ID"))
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
            anthropic_api_key=e.get("ANTHROPIC_API_KEY", "").strip() or None,
            hf_token=e.get("HF_TOKEN") or e.get("HUGGING_FACE_HUB_TOKEN") or None,
            x_bearer_token=e.get("X_BEARER_TOKEN", "").strip() or None,
            apify_token=e.get("APIFY_TOKEN", "").strip() or None,
            arena_salt=e.get(SALT_ENV, "").strip() or None,
            admin_users={u.strip().lower() for u in e.get("ADMIN_USERS", "").split(",") if u.strip()},
            on_space=on_space,
            arena_app_version=e.get("ARENA_APP_VERSION", APP_VERSION),
            proxy_hops=_int_env(e, "BEHIND_PROXY", 1 if on_space else 0),
            max_upload_mb=_int_env(e, "MAX_UPLOAD_MB", d.max_upload_mb),
            gradio_temp_dir=e.get("GRADIO_TEMP_DIR", d.gradio_temp_dir),
            generate_per_minute=_int_env(e, "GENERATE_PER_MINUTE", d.generate_per_minute),
            battles_per_minute=_int_env(e, "BATTLES_PER_MINUTE", d.battles_per_minute),
            votes_per_minute=_int_env(e, "VOTES_PER_MINUTE", d.votes_per_minute),
            generate_per_day=_int_env(e, "GENERATE_PER_DAY", d.generate_per_day),
            battles_per_day=_int_env(e, "BATTLES_PER_DAY", d.battles_per_day),
            backend=e.get("BACKEND", d.backend),
            openai_base_url=e.get("OPENAI_BASE_URL", d.openai_base_url),
            openai_model=e.get("OPENAI_MODEL", d.openai_model),
            openai_api_key=e.get("OPENAI_API_KEY") or None,
            arena_pool=(e.get("ARENA_POOL", d.arena_pool) or d.arena_pool).strip().lower(),
            scheduler=SchedulerConfig(
                max_waiting=int(e.get("REPLY_ARENA_MAX_WAITING", "") or d.scheduler.max_waiting),
                kv=(e.get("REPLY_ARENA_KV", "") or d.scheduler.kv).strip().lower(),
                cuda_graph=env_flag(e.get("REPLY_ARENA_CUDA_GRAPH"), default=d.scheduler.cuda_graph),
                profile=env_flag(e.get("REPLY_ARENA_PROFILE")),
            ),
            wandb_project=e.get("WANDB_PROJECT", d.wandb_project),
            wandb_mode=wandb_mode(e),
            x_api_base_url=e.get("X_API_BASE_URL", d.x_api_base_url),
            apify_api_url=e.get("APIFY_API_URL", d.apify_api_url),
        )

    def model_config(self, **override) -> ModelConfig:
        values = dict(
            base_model=self.base_model,
            load_in_4bit=self.load_in_4bit,
            device=self.device,
            cpu_dtype=self.cpu_dtype,
            adapters_dir=self.adapters_dir,
            cache_dir=self.cache_dir,
            offline=self.offline,
        )
        return ModelConfig(**{**values, **override})


def _int_env(e: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(e.get(name, "") or default)
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {e.get(name)!r}.") from None


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
    pool: BattlePool | None = None  # pre-generated battles on held-out tweets (GPU hosts; ARENA_POOL)
    banners: list[str] = field(default_factory=list)
    limits: VisitorLimits | None = None  # per-address limits on Generate and battle starts (persisted)

    def client_address(self, request) -> str:
        """The caller's address for limits: X-Forwarded-For only as far as the configured proxies are trusted."""
        return client_address(request, self.settings.proxy_hops)

    def model_banner(self) -> str:
        if self.engine is None:
            return "No model is loaded; generation is unavailable. " + " ".join(self.banners)
        return self.engine.loaded.summary()


def _load_engine(s: Settings, banners: list[str]) -> Engine | None:
    if not s.load_model:
        banners.append("Started without a model (--no-model): Generate and Arena are off; the other tabs work.")
        return None
    if s.backend == "openai":
        try:
            return OpenAIBackend(
                s.openai_base_url or "http://127.0.0.1:8000/v1",
                s.openai_model or None,
                api_key=s.openai_api_key,
                max_new_tokens=s.max_new_tokens,
            )
        except ModelLoadError as exc:
            banners.append(str(exc))
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
    engine = Engine(loaded, s.adapters_dir, max_new_tokens=s.max_new_tokens, scheduler=s.scheduler)
    engine.warm_up()
    return engine


def _load_retrieval(s: Settings, engine: Engine | None, banners: list[str]) -> ExampleIndex | None:
    if engine is None:
        return None  # the index only serves the RAG variant
    try:
        index = build_or_load(
            s.rag_dataset, get_encoder(s.cache_dir / "embeddings"), fallback_dir=s.cache_dir / "indexes"
        )
    except Exception as exc:  # retrieval is optional: the RAG variant disappears, the rest works
        log.exception("retrieval unavailable")
        banners.append(
            f"RAG is unavailable: the retrieval index could not be built ({type(exc).__name__}: {str(exc)[:120]})."
        )
        return None
    engine.retriever = index.search
    return index


def build_battle_manager(s: Settings, engine: Engine | None, votes: VoteStore, db: SecurityDB) -> BattleManager | None:
    """Contenders are re-read each battle, so a newly trained adapter joins without a restart."""
    if engine is None:
        return None

    def generate(contender: str, tweet: str):
        last = None
        for last in engine.stream_many(tweet, [contender], private=True):
            pass
        r = last[0].result
        return r.reply, r.settings

    def stream(pair, tweet: str):
        """Both replies in one batch, each with its own OS-seeded generator (a public seed cannot reproduce them)."""
        for evs in engine.stream_many(tweet, list(pair), private=True):
            yield [(e.reply, e.result.settings if e.done else None, e.queued) for e in evs]

    config = ArenaConfig(app_version=s.arena_app_version, votes_per_minute=s.votes_per_minute, salt=s.arena_salt)
    # Vote limits live in the app's security.sqlite3, so they survive a restart like the other limits.
    return BattleManager(
        votes,
        engine.variants,
        generate,
        config=config,
        stream_fn=stream,
        limiter_factory=lambda windows: PersistentRateLimiter(db, "vote", windows),
    )


def _pool(s: Settings, engine: Engine | None) -> BattlePool | None:
    """Held-out replies pre-generated as background scheduler rows; visitors always go first."""
    if engine is None or not hasattr(engine, "loaded"):
        return None
    on = s.arena_pool in ("1", "true", "on", "yes") or (
        s.arena_pool == "auto" and getattr(engine.loaded, "device", "cpu").startswith("cuda")
    )
    if not on:
        return None
    pool = BattlePool(engine, s.heldout, Path(s.data_dir) / "battle_pool", engine.variants)
    pool.refresh()
    return pool


def build_context(settings: Settings) -> AppContext:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.adapters_dir.mkdir(parents=True, exist_ok=True)
    db = SecurityDB(settings.data_dir)  # admin sessions and rate limits survive a restart
    gate = AdminGate(
        password=settings.admin_password, allowed_users=set(settings.admin_users), on_space=settings.on_space, db=db
    )
    limits = VisitorLimits.build(
        db,
        settings.generate_per_minute,
        settings.battles_per_minute,
        settings.generate_per_day,
        settings.battles_per_day,
    )
    # Stores first: they need no model, and the tabs that only read them must work when the model fails.
    votes = VoteStore(settings.data_dir)
    reviews = ReviewStore(settings.data_dir)
    runs = RunManager(settings.data_dir, settings.adapters_dir)
    banners: list[str] = []
    engine = _load_engine(settings, banners)
    index = _load_retrieval(settings, engine, banners)
    battles = build_battle_manager(settings, engine, votes, db)
    return AppContext(
        settings, gate, votes, reviews, runs, engine, index, battles, _pool(settings, engine), banners, limits=limits
    )
