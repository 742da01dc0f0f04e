"""DPO on the Arena's votes with a tiny Qwen3: votes -> cleaned pairs -> TRL DPO from an SFT parent -> adapter with
lineage."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import torch

from arena.lineage import lineage_string, read_lineage, used_vote_ids
from arena.preferences import CleaningConfig, build_from_store
from arena.store import VoteStore
from tests.support.preference_votes import HELD_OUT, bad, good, synthetic_votes
from tests.support.tiny_qwen3 import save_tiny_qwen3
from training.config import TrainConfig, resolve, validate
from training.dpo import preference_margins, train_preference
from training.train import train


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo")
    tiny = save_tiny_qwen3(root / "tiny", init_std=0.2)
    with VoteStore(root / "data") as store:
        synthetic_votes(store)
        prov = build_from_store(store, root / "prefs", CleaningConfig(eval_fraction=0.2))
    common = dict(
        base_model=str(tiny),
        load_in_4bit=False,
        cpu_dtype="float32",
        rank=8,
        alpha=16,
        warmup_ratio=0.0,
        output_dir=str(root / "runs"),
        adapters_dir=str(root / "adapters"),
        early_stopping_patience=0,
        logging_steps=1,
    )
    sft = resolve(
        None,
        {
            **common,
            "run_name": "sft-v1",
            "learning_rate": 1e-2,
            "micro_batch_size": 8,
            "grad_accum": 1,
            "max_steps": 3,
            "eval_steps": 3,
            "save_steps": 3,
        },
    )
    (root / "runs" / "sft-v1").mkdir(parents=True)
    train(sft, root / "runs" / "sft-v1")
    dpo = resolve(
        None,
        {
            **common,
            "kind": "dpo",
            "run_name": "dpo-v2",
            "parent_adapter": str(root / "adapters" / "sft-v1"),
            "dataset": str(root / "prefs"),
            "min_pairs": 20,
            "learning_rate": 2e-3,
            "micro_batch_size": 8,
            "grad_accum": 1,
            "max_steps": 24,
            "eval_steps": 12,
            "save_steps": 12,
            "dpo_beta": 0.1,
        },
    )
    (root / "runs" / "dpo-v2").mkdir(parents=True)
    final = train_preference(dpo, root / "runs" / "dpo-v2")
    return root, tiny, prov, dpo, final


def _load(tiny: Path, adapter: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny))
    base = AutoModelForCausalLM.from_pretrained(str(tiny), dtype=torch.float32)
    return PeftModel.from_pretrained(base, str(adapter)).eval(), tok


@pytest.mark.slow
def test_dpo_raises_the_chosen_vs_rejected_margin_on_held_out_pairs(world):
    root, tiny, _, _, final = world
    assert final["state"] == "completed"
    held = [{"tweet": f"My thoughts on {t} today", "chosen": good(t), "rejected": bad(t)} for t in HELD_OUT]
    parent, tok = _load(tiny, root / "adapters" / "sft-v1")
    before = preference_margins(parent, tok, held)
    child, _ = _load(tiny, Path(final["adapter_path"]))
    after = preference_margins(child, tok, held)
    gains = [a - b for a, b in zip(after, before)]
    assert all(g > 0 for g in gains), gains
    assert sum(gains) / len(gains) > 1.0, gains


@pytest.mark.slow
def test_reference_is_the_parent_and_curves_are_logged(world):
    root, _, _, _, final = world
    recs = [json.loads(x) for x in (root / "runs" / "dpo-v2" / "trainer_log.jsonl").read_text().splitlines()]
    train_recs = [r for r in recs if r["event"] == "train"]
    assert len(train_recs) == 24
    # Before the first update the policy IS the reference (the parent adapter, not the bare base): zero rewards.
    assert train_recs[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-5)
    assert train_recs[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-5)
    assert sum(r["rewards/margins"] for r in train_recs[-4:]) / 4 > 0.2
    assert train_recs[-1]["rewards/accuracies"] >= 0.75
    evals = [r for r in recs if r["event"] in ("eval", "final_eval")]
    assert evals and evals[-1]["eval_rewards/margins"] > 0  # held-out tweets of the preference set
    assert final["metrics"]["pairs_per_s"] > 0


@pytest.mark.slow
def test_adapter_has_lineage_provenance_and_joins_the_arena(world):
    root, _, prov, _, final = world
    adapter = Path(final["adapter_path"])
    assert adapter == root / "adapters" / "dpo-v2"
    assert not (adapter / "ref").exists()  # the frozen reference copy is not saved
    from generation.adapters import discover

    assert "dpo-v2" in discover(
        root / "adapters"
    )  # the engine lists discover() on every battle: it joins automatically
    lin = read_lineage(adapter)
    assert lin["parent_adapter"] == "sft-v1" and lin["kind"] == "dpo"
    assert set(lin["vote_ids"]) == set(prov["vote_ids"]) and lin["vote_set_sha256"] == prov["vote_set_sha256"]
    assert datetime.fromisoformat(lin["trained_at"]) > datetime.fromisoformat(prov["latest_vote_at"])
    assert json.loads((adapter / "provenance.json").read_text())["vote_ids"] == prov["vote_ids"]
    assert used_vote_ids(root / "adapters") == set(prov["vote_ids"])
    assert (
        lineage_string(root / "adapters", "dpo-v2")
        == f"base → SFT sft-v1 → DPO dpo-v2 on {len(prov['vote_ids'])} votes"
    )


@pytest.fixture(scope="module")
def prefs_only(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo-refusals")
    with VoteStore(root / "data") as store:
        synthetic_votes(store, n_voters=1)
        prov = build_from_store(store, root / "prefs", CleaningConfig(eval_fraction=0.2))
    parent = root / "adapters" / "sft-v1"
    parent.mkdir(parents=True)
    (parent / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiny", "r": 8}))
    cfg = TrainConfig.from_dict(
        {
            "base_model": str(root / "tiny"),
            "kind": "dpo",
            "dataset": str(root / "prefs"),
            "min_pairs": 5,
            "parent_adapter": str(parent),
            "adapters_dir": str(root / "adapters"),
            "load_in_4bit": False,
        }
    )
    return root, prov, cfg


def test_too_few_pairs_and_a_foreign_parent_are_refused(prefs_only, tmp_path):
    root, prov, cfg = prefs_only
    assert validate(cfg) == []
    with pytest.raises(
        ValueError, match=rf"Only {prov['n_train']} clean preference pairs to train on; a DPO run needs at least 500 "
    ):
        validate(TrainConfig.from_dict({"min_pairs": 500}, base=cfg))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "Qwen/Qwen3-8B", "r": 8}))
    with pytest.raises(
        ValueError, match=r"Parent adapter foreign was trained for base model Qwen/Qwen3-8B, not .*tiny"
    ):
        validate(TrainConfig.from_dict({"parent_adapter": str(foreign)}, base=cfg))
    with pytest.raises(ValueError, match="Parent adapter nope was not found"):
        validate(TrainConfig.from_dict({"parent_adapter": "nope"}, base=cfg))
    assert validate(TrainConfig.from_dict({"parent_adapter": "sft-v1"}, base=cfg)) == []  # a name in adapters_dir
    with pytest.raises(ValueError, match="is not a preference dataset"):
        validate(TrainConfig.from_dict({"dataset": str(root / "data")}, base=cfg))
    with pytest.raises(ValueError, match="needs a preference dataset built from the votes"):
        validate(TrainConfig.from_dict({"dataset": ""}, base=cfg))
    with pytest.raises(ValueError, match="kind must be one of sft, dpo, kto"):
        validate(TrainConfig.from_dict({"kind": "ppo"}))
    with pytest.raises(ValueError, match="dpo_beta must be positive"):
        validate(TrainConfig.from_dict({"dpo_beta": 0}, base=cfg))


def test_the_runner_refuses_before_any_run_folder_exists(prefs_only, tmp_path):
    from training.runner import RunManager

    _, prov, cfg = prefs_only
    rm = RunManager(tmp_path / "data", tmp_path / "adapters")
    with pytest.raises(ValueError, match=f"Only {prov['n_train']} clean preference pairs"):
        rm.start(TrainConfig.from_dict({"min_pairs": 1000}, base=cfg))
    assert not list((tmp_path / "data").rglob("run.yaml"))


def test_sft_entry_point_refuses_a_preference_config(prefs_only, tmp_path):
    _, _, cfg = prefs_only
    with pytest.raises(ValueError, match="trained by `python -m training.dpo`"):
        train(cfg, tmp_path)
    from training.launch import build_command

    assert "training.dpo" in build_command(cfg, tmp_path) and "training.train" in build_command(TrainConfig(), tmp_path)


@pytest.mark.slow
def test_kto_runs_on_the_same_votes(world):
    root, tiny, prov, dpo, _ = world
    kto = resolve(
        None, {**dpo.to_dict(), "kind": "kto", "run_name": "kto-v2", "max_steps": 4, "eval_steps": 4, "save_steps": 4}
    )
    (root / "runs" / "kto-v2").mkdir(parents=True)
    final = train_preference(kto, root / "runs" / "kto-v2")
    assert final["state"] == "completed"
    recs = [json.loads(x) for x in (root / "runs" / "kto-v2" / "trainer_log.jsonl").read_text().splitlines()]
    train_recs = [r for r in recs if r["event"] == "train"]
    assert len(train_recs) == 4 and all("kl" in r for r in train_recs)
    assert read_lineage(root / "adapters" / "kto-v2")["kind"] == "kto"
    assert lineage_string(root / "adapters", "kto-v2").startswith("base → SFT sft-v1 → KTO kto-v2 on ")
