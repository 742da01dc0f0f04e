"""Arena generation on the scheduler (tiny random Qwen3, real PEFT adapters, real SQLite vote store): a live battle's
two
replies decode in the same batch and stream as they grow; pool battles are served without the GPU, never repeat a
(tweet, pair) to a voter, never leak names, and pick up a new adapter."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from types import SimpleNamespace

from context import Settings, build_battle_manager

import pytest
import torch

from arena.pool import BattlePool
from arena.store import VoteStore
from generation import Engine, ModelConfig, SamplingConfig, load_base
from generation.scheduler import SchedulerConfig
from security import SecurityDB
from tests.support.tiny_qwen3 import save_tiny_qwen3

TWEETS = ["Coffee before code?", "Tabs or spaces, final answer?", "hot take: meetings should be emails"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3-arena"), init_std=0.3)


def _adapter(tiny_dir, out_dir, seed):
    from peft import LoraConfig, get_peft_model

    scratch = load_base(ModelConfig(base_model=str(tiny_dir), device="cpu", cpu_dtype="float32"))
    torch.manual_seed(seed)
    pm = get_peft_model(
        scratch.model,
        LoraConfig(
            r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
        ),
    )
    pm.save_pretrained(str(out_dir))
    f = out_dir / "adapter_config.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "base_model_name_or_path": str(tiny_dir)}))


@pytest.fixture()
def setup(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ARENA_POOL", "0")
    adapters = tmp_path / "adapters"
    _adapter(tiny_dir, adapters / "alpha", 1)
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("".join(json.dumps({"tweet_id": f"t{i}", "tweet": t}) + "\n" for i, t in enumerate(TWEETS)))
    engine = Engine(
        load_base(ModelConfig(base_model=str(tiny_dir), device="cpu", cpu_dtype="float32")),
        adapters,
        scheduler=SchedulerConfig(max_batch=8),
    )
    engine.default_sampling = lambda thinking=False: SamplingConfig(
        max_new_tokens=24
    )  # short replies keep the test fast
    settings = Settings(data_dir=tmp_path / "data", heldout=heldout)
    manager = build_battle_manager(settings, engine, VoteStore(settings.data_dir), SecurityDB(None))
    yield SimpleNamespace(
        manager=manager, engine=engine, adapters=adapters, heldout=heldout, tiny_dir=tiny_dir, tmp=tmp_path
    )
    engine.close()


def test_live_battle_streams_both_replies_from_one_batch(setup):
    manager = setup.manager
    updates = list(manager.new_battle_stream("sess-1", "Is pineapple on pizza OK?"))
    *partials, (ra, rb, _, battle) = updates
    assert battle is not None and (ra, rb) == (battle.reply_a, battle.reply_b)
    assert all(u[3] is None for u in partials)
    grew = [(len(a), len(b)) for a, b, _, _ in partials]
    assert len({g for g in grew}) > 2, "both boxes must receive the replies as they grow"
    assert setup.engine.scheduler.max_rows_seen == 2, "the two replies are decoded in the same batch"
    assert set(asdict(battle)) == {"battle_id", "tweet", "reply_a", "reply_b"}  # no names before the vote
    res = manager.vote("sess-1", battle.battle_id, "a", "127.0.0.1")
    assert {res.contender_a, res.contender_b} == {"base", "lora:alpha"}


def test_pool_battles_are_instant_unique_per_voter_and_anonymous(setup):
    manager = setup.manager
    pool = BattlePool(setup.engine, setup.heldout, setup.tmp / "pool", setup.engine.variants)
    assert pool.fill() == 2 * len(TWEETS)  # base + lora:alpha, every held-out tweet
    steps = setup.engine.scheduler.steps
    seen, times = set(), []
    while True:
        t0 = time.perf_counter()
        b = manager.new_pool_battle("sess-x", ["sess-x", "client:10.0.0.1"], pool)
        times.append(time.perf_counter() - t0)
        if b is None:
            break
        assert set(asdict(b)) == {"battle_id", "tweet", "reply_a", "reply_b"}
        res = manager.vote("sess-x", b.battle_id, "tie", f"10.0.0.{len(seen) % 200}")  # revealed only after the vote
        key = (b.tweet, tuple(sorted((res.contender_a, res.contender_b))))
        assert key not in seen, "the pool repeated a (tweet, pair) to the same voter"
        seen.add(key)
    assert len(seen) == len(TWEETS)  # one pair (base vs lora:alpha) x every tweet, then the pool says 'nothing new'
    assert setup.engine.scheduler.steps == steps, "pool battles must not touch the model"
    assert max(times) < 0.15
    # same client, new session: still nothing repeated; another voter starts fresh
    assert manager.new_pool_battle("sess-y", ["sess-y", "client:10.0.0.1"], pool) is None
    assert manager.new_pool_battle("sess-z", ["sess-z", "client:10.0.0.2"], pool) is not None


def test_pool_refreshes_when_an_adapter_appears_and_reuses_its_cache(setup):
    pool = BattlePool(setup.engine, setup.heldout, setup.tmp / "pool", setup.engine.variants)
    pool.fill()
    assert pool.missing() == [] and pool.ready() == ["base", "lora:alpha"]
    _adapter(setup.tiny_dir, setup.adapters / "beta", 2)
    assert pool.missing() == ["lora:beta"]
    assert pool.refresh() is True
    pool.wait(120)
    assert pool.ready() == ["base", "lora:alpha", "lora:beta"]
    again = BattlePool(setup.engine, setup.heldout, setup.tmp / "pool", setup.engine.variants)
    assert again.fill() == 0  # everything comes from the reply cache
    assert again._replies == pool._replies
