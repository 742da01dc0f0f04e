"""The shared context: one env reader, and stores that exist whether or not a model loaded."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from context import AppContext, Settings, build_battle_manager, build_context

import gradio as gr

from app import build_app, parse_args
from arena.store import VoteRecord, VoteStore
from arena.ui import build_leaderboard_tab
from security import SecurityDB
from security.session import COOKIE_NAME


def test_settings_from_env_and_flags_override(tmp_path: Path):
    env = {
        "LOAD_IN_4BIT": "yes",
        "DATA_DIR": str(tmp_path / "d"),
        "REPLY_ARENA_MAX_NEW_TOKENS": "32",
        "ADMIN_USERS": "Alice, bob",
        "SPACE_ID": "me/space",
        "SYSTEM": "spaces",
        "HF_HUB_OFFLINE": "1",
    }
    s = Settings.from_env(env)
    assert s.load_in_4bit is True and s.offline is True and s.max_new_tokens == 32
    assert s.data_dir == tmp_path / "d" and s.admin_users == {"alice", "bob"} and s.on_space
    assert s.model_config().load_in_4bit is True and s.model_config().offline is True
    flagged = parse_args(["--data-dir", str(tmp_path / "x"), "--no-model"], defaults=s)
    assert flagged.data_dir == tmp_path / "x" and flagged.load_model is False and flagged.load_in_4bit is True
    assert Settings.from_env({}).cache_dir == Settings().cache_dir  # one cache default
    assert (Settings.from_env({}).wandb_mode, Settings.from_env({"WANDB_API_KEY": "k"}).wandb_mode) == (
        "offline",
        "online",
    )
    assert Settings.from_env({"WANDB_PROJECT": "p"}).wandb_project == "p" and Settings().wandb_project == "reply-arena"


SECRETS = {
    "ADMIN_PASSWORD": "admin-pw-7f3a",
    "ANTHROPIC_API_KEY": "sk-ant-secret-7f3a",
    "OPENAI_API_KEY": "sk-openai-secret-7f3a",
    "ARENA_SALT": "salt-secret-7f3a",
    "HF_TOKEN": "hf_secret_7f3a",
    "X_BEARER_TOKEN": "x-bearer-secret-7f3a",
    "APIFY_TOKEN": "apify-secret-7f3a",
}


def test_secrets_are_read_once_and_never_printed():
    """The secrets reach Settings (the one env reader) and stay out of its repr, so a logged Settings or AppContext
    cannot leak them."""
    s = Settings.from_env(dict(SECRETS))
    assert s.admin_password == SECRETS["ADMIN_PASSWORD"]
    assert s.anthropic_api_key == SECRETS["ANTHROPIC_API_KEY"]
    assert s.openai_api_key == SECRETS["OPENAI_API_KEY"]
    assert s.arena_salt == SECRETS["ARENA_SALT"] and s.hf_token == SECRETS["HF_TOKEN"]
    assert s.x_bearer_token == SECRETS["X_BEARER_TOKEN"] and s.apify_token == SECRETS["APIFY_TOKEN"]
    shown = repr(s) + str(s)
    for value in SECRETS.values():
        assert value not in shown
    assert Settings.from_env({"ANTHROPIC_API_KEY": "  "}).anthropic_api_key is None  # blank = not set
    assert Settings.from_env({"HUGGING_FACE_HUB_TOKEN": "hf_old"}).hf_token == "hf_old"  # the older name still works


def test_arena_salt_reaches_the_battle_manager(tmp_path: Path):
    s = Settings.from_env({"ARENA_SALT": " pepper-7f3a ", "DATA_DIR": str(tmp_path)})
    votes = VoteStore(tmp_path)
    mgr = build_battle_manager(s, SimpleNamespace(variants=lambda: ["base", "rag"]), votes, SecurityDB(tmp_path))
    assert mgr is not None and mgr.config.salt == "pepper-7f3a"
    assert not (tmp_path / "arena_salt").exists()  # the configured salt wins: no random one is persisted
    votes.close()


def test_scheduler_limits_come_from_settings_not_the_scheduler():
    """The scheduler's knobs are read here, once; its config defaults are plain values (no env reads)."""
    from generation.scheduler import SchedulerConfig

    s = Settings.from_env(
        {
            "REPLY_ARENA_MAX_WAITING": "9",
            "REPLY_ARENA_KV": "Dynamic",
            "REPLY_ARENA_CUDA_GRAPH": "0",
            "REPLY_ARENA_PROFILE": "yes",
        }
    )
    assert (s.scheduler.max_waiting, s.scheduler.kv, s.scheduler.cuda_graph, s.scheduler.profile) == (
        9,
        "dynamic",
        False,
        True,
    )
    d = Settings.from_env({}).scheduler
    assert d == SchedulerConfig() and d.cuda_graph is True and d.max_waiting == 64 and d.kv == "auto"


def _vote(bid: str) -> VoteRecord:
    return VoteRecord(
        battle_id=bid,
        tweet="Coffee or tea?",
        contender_a="base",
        contender_b="rag",
        reply_a="Coffee.",
        reply_b="Tea.",
        settings={},
        vote="a",
        session_hash="s",
        client_hash="c",
        app_version="t",
    )


def test_stores_exist_without_a_model_so_leaderboard_and_export_work(tmp_path: Path):
    """Regression: without a model the Arena built no vote store, the Leaderboard said "No vote store" and Export
    passed None to the exporter."""
    ctx = build_context(Settings(load_model=False, data_dir=tmp_path / "data", adapters_dir=tmp_path / "adapters"))
    assert isinstance(ctx, AppContext) and ctx.engine is None and ctx.battles is None
    ctx.votes.add_vote(_vote("b1"))
    assert build_app(ctx) is not None  # every tab builds without a model
    with gr.Blocks() as demo:
        build_leaderboard_tab(ctx)
    fns = {f.name: f.fn for f in demo.fns.values()}
    counts = fns["refresh_board"](False)[0]
    assert "**1** votes in the store" in counts
    ctx.gate.password = "pw"
    token = ctx.gate.login("pw", "127.0.0.1")
    admin = SimpleNamespace(session_hash="boss", cookies={COOKIE_NAME: token})
    path, msg = fns["on_export"]("jsonl", admin)
    assert msg.startswith("Exported 1 votes") and '"battle_id": "b1"' in Path(path).read_text()
    assert "without a model" in " ".join(ctx.banners)
