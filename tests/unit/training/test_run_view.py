from __future__ import annotations

import json

import pytest

from training import train
from training.config import TrainConfig, resolve
from training.run_view import (
    CHECKPOINTS,
    checkpoint_choices,
    config_yaml,
    live_state,
    load_config_yaml,
    promote_checkpoint,
    resume_offered,
    shown_run,
    sig4,
    stop_result,
)


def test_sig4():
    assert sig4(4.121650679906209) == 4.122
    assert sig4(0.000123456) == 0.0001235
    assert sig4(1234.5678) == 1235.0
    assert sig4(None) is None and sig4("x") == "x" and sig4(True) is True


def test_view_follows_the_new_or_running_run_unless_picked_by_hand():
    ids = ["v2", "v1"]
    assert shown_run(None, "v2", "v1", ids) == "v2"  # Start/v2 cleared the pick: the running run is shown
    assert shown_run("v1", "v2", "v2", ids) == "v1"  # the admin picked v1 by hand
    assert shown_run(None, None, "v1", ids) == "v1"
    assert shown_run(None, None, None, ids) == "v2"
    assert shown_run("gone", None, None, []) is None


def test_live_state_says_stopping_until_the_process_is_gone():
    assert live_state("running", True) == "stopping…" and live_state("stopping", False) == "stopping…"
    assert live_state("running", False) == "running" and live_state("stopped", True) == "stopped"


def test_resume_and_stop_words():
    assert resume_offered("stopped", None) and resume_offered("failed", None)
    assert not resume_offered("stopped", "other-run") and not resume_offered("completed", None)
    assert "Resume" in stop_result("r1", "stopped", None)
    assert "finished before" in stop_result("r1", "completed", None)


def test_config_yaml_round_trip_and_refusals():
    cfg = resolve("cpu-demo", {"rank": 4, "run_name": "mine"})
    back = load_config_yaml(config_yaml(cfg))
    assert (
        back.rank == 4 and back.run_name == "mine" and back.to_dict() == TrainConfig.from_dict(cfg.to_dict()).to_dict()
    )
    with pytest.raises(ValueError, match="not valid YAML at line"):
        load_config_yaml("rank: [1,\n")
    with pytest.raises(ValueError, match="YAML mapping"):
        load_config_yaml("- 1\n- 2\n")
    with pytest.raises(ValueError, match="Unknown config key"):
        load_config_yaml("rnak: 4\n")


def test_checkpoint_promoted_to_an_adapter(tmp_path):
    assert CHECKPOINTS == train.CHECKPOINTS
    run = tmp_path / "runs" / "r1"
    for step in (10, 20):
        ck = run / CHECKPOINTS / f"checkpoint-{step}"
        ck.mkdir(parents=True)
        (ck / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/tmp/local/SmolLM2", "r": 8}))
        (ck / "adapter_model.safetensors").write_bytes(b"w" * step)
    (run / CHECKPOINTS / "checkpoint-30").mkdir()  # no weights: not offered
    final = tmp_path / "adapters" / "r1"
    final.mkdir(parents=True)
    (final / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "SmolLM2-135M-Instruct", "r": 8}))
    (final / "tokenizer.json").write_text("{}")
    assert [c[0] for c in checkpoint_choices(run)] == ["step 20", "step 10"]
    dest = promote_checkpoint(run / CHECKPOINTS / "checkpoint-10", tmp_path / "adapters", "r1-step10", final)
    assert (dest / "adapter_model.safetensors").read_bytes() == b"w" * 10
    assert json.loads((dest / "adapter_config.json").read_text())["base_model_name_or_path"] == "SmolLM2-135M-Instruct"
    assert (dest / "tokenizer.json").is_file()
    with pytest.raises(ValueError, match="already exists"):
        promote_checkpoint(run / CHECKPOINTS / "checkpoint-10", tmp_path / "adapters", "r1-step10", final)
    with pytest.raises(ValueError, match="letters, digits"):
        promote_checkpoint(run / CHECKPOINTS / "checkpoint-10", tmp_path / "adapters", "../x", final)
    assert not list((tmp_path / "adapters").glob(".*"))  # no half-written folder left


def test_run_history_shows_losses_to_4_significant_digits():
    from training.service import history_rows

    rows = history_rows(
        [
            {
                "run_id": "r",
                "state": "completed",
                "metrics": {"train_loss": 4.121650679906209, "eval_loss": 0.98765432},
                "config": {"rank": 8},
            }
        ]
    )
    assert rows[0][6:8] == [4.122, 0.9877]
