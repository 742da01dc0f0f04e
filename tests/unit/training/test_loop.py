"""The one-click loop: pairs available since the last DPO run, the next run's config, refusals, and a real DPO
subprocess
through the runner (progress with reward curves, stop, resume, adapter with lineage, the used votes not offered
again)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arena.store import VoteStore
from tests.support.preference_votes import synthetic_votes
from tests.support.run_helpers import wait_for
from tests.support.tiny_qwen3 import save_tiny_qwen3
from training.config import TrainConfig, resolve
from training.loop import describe, loop_state, next_config, start_next
from training.runner import RunManager


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3-loop"), init_std=0.2)


def _votes(data_dir: Path, n_voters: int = 2) -> None:
    with VoteStore(data_dir) as store:
        synthetic_votes(store, n_voters)


def _sft_adapter(adapters: Path, name: str = "sft-v1", base: str = "tiny") -> None:
    (adapters / name).mkdir(parents=True)
    (adapters / name / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "r": 8}))


def test_state_before_and_after_votes(tmp_path):
    st = loop_state(tmp_path / "data", tmp_path / "adapters")
    assert (st.available, st.version, st.parents, st.last_dpo) == (0, 2, [], None)
    assert st.headline() == "0 clean preference pairs available (no DPO run yet)"
    _votes(tmp_path / "data")
    _sft_adapter(tmp_path / "adapters")
    st = loop_state(tmp_path / "data", tmp_path / "adapters")
    assert st.available == 48 and st.funnel["votes"] == 48 and st.parents == ["sft-v1"]
    lines = describe(st, "sft-v1", tmp_path / "adapters")
    assert (
        lines[0] == "48 clean preference pairs available (no DPO run yet)"
        and lines[-1] == "Starts from: base → SFT sft-v1"
    )
    cfg = next_config(TrainConfig(), st, "sft-v1", tmp_path / "adapters", "prefs")
    assert (cfg.kind, cfg.run_name, cfg.dataset) == ("dpo", "dpo-v2", "prefs")
    assert cfg.parent_adapter == str((tmp_path / "adapters" / "sft-v1").resolve())


def test_too_few_pairs_is_refused_and_nothing_is_left_behind(tmp_path):
    _votes(tmp_path / "data", 1)
    _sft_adapter(tmp_path / "adapters")
    rm = RunManager(tmp_path / "data", tmp_path / "adapters")
    with pytest.raises(ValueError, match=r"Only \d+ clean preference pairs to train on; a DPO run needs at least 1000"):
        start_next(rm, tmp_path / "data", TrainConfig.from_dict({"min_pairs": 1000, "load_in_4bit": False}), "sft-v1")
    assert not list((tmp_path / "data" / "preferences").iterdir())
    assert rm.runs() == []
    empty = RunManager(tmp_path / "empty", tmp_path / "adapters")
    with pytest.raises(ValueError, match="No clean preference pairs are available since the last DPO run"):
        start_next(empty, tmp_path / "empty", TrainConfig(), "sft-v1")


@pytest.mark.slow
def test_dpo_run_through_the_runner_stops_resumes_and_closes_the_loop(tiny_dir, tmp_path):
    data, adapters = tmp_path / "data", tmp_path / "adapters"
    _votes(data)
    rm = RunManager(data, adapters)
    base = resolve(
        None,
        dict(
            base_model=str(tiny_dir),
            load_in_4bit=False,
            cpu_dtype="float32",
            rank=8,
            alpha=16,
            learning_rate=2e-3,
            micro_batch_size=4,
            grad_accum=1,
            max_steps=400,
            warmup_ratio=0.0,
            eval_steps=2,
            save_steps=2,
            logging_steps=1,
            early_stopping_patience=0,
            min_pairs=20,
        ),
    )
    h, cfg, prov = start_next(rm, data, base, "")  # no adapter yet: a fresh LoRA on the base, reference = the base
    assert cfg.kind == "dpo" and h.run_id == "dpo-v2"
    st = wait_for(rm, h.run_id, lambda s: s.step >= 3, timeout=300)
    st = rm.stop(h.run_id, timeout=60)
    assert st.state == "stopped"
    stopped_at = st.step
    assert (h.run_dir / "checkpoints" / f"checkpoint-{stopped_at}" / "trainer_state.json").is_file()
    rm.resume(h.run_id, overrides={"max_steps": stopped_at + 2})
    st = wait_for(rm, h.run_id, lambda s: s.state in ("completed", "failed"), timeout=300)
    assert st.state == "completed", st.error
    recs = [r for r in st.history if r.get("event") == "train"]
    assert recs and all("rewards/margins" in r and "rewards/accuracies" in r for r in recs)
    assert [r["step"] for r in st.history if r.get("event") == "begin"] == [0, stopped_at]
    lin = json.loads((adapters / "dpo-v2" / "lineage.json").read_text())
    assert lin["parent_adapter"] == "" and set(lin["vote_ids"]) == set(prov["vote_ids"])
    after = loop_state(data, adapters)
    assert after.available == 0 and after.version == 3 and after.last_dpo == "dpo-v2"
    assert after.funnel["already_used"] == len(prov["vote_ids"])


def test_training_curves_show_dpo_rewards():
    from training.service import loss_figure

    hist = [
        {
            "event": "train",
            "step": s,
            "loss": 0.69 - 0.01 * s,
            "rewards/chosen": 0.01 * s,
            "rewards/rejected": -0.01 * s,
            "rewards/margins": 0.02 * s,
            "rewards/accuracies": 0.5 + 0.05 * s,
        }
        for s in range(1, 6)
    ]
    fig = loss_figure(hist)
    loss_ax, reward_ax = fig.axes
    assert [ln.get_label() for ln in reward_ax.get_lines()] == [
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
    ]
    assert list(reward_ax.get_lines()[2].get_ydata()) == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])
    assert len(loss_figure([{"event": "train", "step": 1, "loss": 1.0}]).axes) == 1  # SFT runs keep one panel
