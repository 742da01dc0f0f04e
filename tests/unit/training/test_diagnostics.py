"""Diagnostics on synthetic trainer logs: each finding, its seed adjustment, conflicts, and the comparison table."""

from __future__ import annotations

import json

import pytest

from training.config import TrainConfig
from training.diagnostics import compare_runs, diagnose, report, suggest_v2, summarize, verdict


def make_log(train: list[float], evals: list[float], every: int = 10, final_eval: float | None = None) -> list[dict]:
    """Train loss every step, eval every `every` steps (the first at step 0, like eval_on_start)."""
    recs = [{"event": "begin", "step": 0}]
    for i, e in enumerate(evals):
        recs.append({"event": "eval", "step": i * every, "eval_loss": e, "loss": None})
    recs += [{"event": "train", "step": i + 1, "loss": v, "lr": 1e-4} for i, v in enumerate(train)]
    recs.sort(key=lambda r: r["step"])
    if final_eval is not None:
        recs.append({"event": "final_eval", "step": len(train), "eval_loss": final_eval})
    return recs


def kinds(findings) -> list[str]:
    return [f.kind for f in findings]


def test_healthy_run_has_no_findings():
    log = make_log([1.2, 0.9, 0.7, 0.62, 0.6, 0.58], [1.3, 0.9, 0.7, 0.65, 0.61])
    cfg = TrainConfig(run_name="ok")
    findings, new = suggest_v2(cfg, log)
    assert findings == [] and new == cfg.to_dict()
    assert "No problems" in report(findings, new, cfg)


def test_overfitting_suggests_fewer_epochs_more_dropout_lower_rank():
    log = make_log([0.5, 0.4, 0.35, 0.3, 0.3], [1.0, 0.7, 0.68, 0.7, 0.75])
    findings, new = suggest_v2(TrainConfig(run_name="r"), log)
    assert kinds(findings) == ["overfitting"]
    f = findings[0]
    assert f.evidence["gap"] == pytest.approx(0.75 - 0.3167, abs=1e-3) and "more" in " ".join(f.advice).lower()
    assert (new["epochs"], new["dropout"], new["rank"], new["alpha"]) == (1, 0.15, 8, 8)
    assert new["run_name"] == "r-v2"


def test_overfitting_respects_minimums_and_step_capped_runs():
    log = make_log([0.3] * 5, [0.9, 0.9])
    _, new = suggest_v2(TrainConfig(epochs=1, rank=4, alpha=4, dropout=0.5), log)
    assert (new["epochs"], new["rank"], new["dropout"]) == (1, 4, 0.5)
    _, new = suggest_v2(TrainConfig(epochs=2, max_steps=30), log)
    assert new["max_steps"] == 15  # "one epoch less" for a run capped by max_steps


def test_underfitting_suggests_higher_lr_more_epochs_higher_rank():
    log = make_log([2.5, 2.0, 1.8, 1.7, 1.6], [2.6, 1.9, 1.75])
    findings, new = suggest_v2(TrainConfig(), log)
    assert kinds(findings) == ["underfitting"]
    assert (
        new["learning_rate"] == pytest.approx(3e-4) and new["epochs"] == 3 and (new["rank"], new["alpha"]) == (32, 32)
    )


def test_forgetting_suggests_lower_lr_fewer_epochs():
    log = make_log([0.3, 0.1, 0.06, 0.05, 0.04], [0.4, 0.2, 0.15, 0.12])
    findings, new = suggest_v2(TrainConfig(epochs=3), log)
    assert kinds(findings) == ["forgetting"]
    assert new["learning_rate"] == pytest.approx(1e-4) and new["epochs"] == 2


def test_plateau_suggests_lower_lr_and_stopping_at_the_best_eval():
    log = make_log([0.8] * 40, [1.0, 0.80, 0.798, 0.801, 0.803])
    findings, new = suggest_v2(TrainConfig(), log)
    assert kinds(findings) == ["plateau"]
    assert findings[0].evidence["best_eval_step"] == 20
    assert new["learning_rate"] == pytest.approx(1e-4) and new["max_steps"] == 20


def test_no_plateau_while_improving_or_with_too_few_evals():
    assert "plateau" not in kinds(diagnose(make_log([0.8] * 40, [1.0, 0.9, 0.85, 0.80, 0.75]), TrainConfig()))
    assert "plateau" not in kinds(diagnose(make_log([0.8] * 10, [1.0, 0.999]), TrainConfig()))
    # the threshold is the config's early-stopping threshold
    assert "plateau" in kinds(
        diagnose(make_log([0.8] * 40, [1.0, 0.9, 0.85, 0.80, 0.75]), TrainConfig(early_stopping_threshold=0.2))
    )


def test_train_loss_is_smoothed_over_the_last_records():
    log = make_log([0.6, 0.6, 0.6, 0.6, 0.6, 1.3], [0.7, 0.65])  # one noisy micro-batch at the end
    assert summarize(log)["train_loss"] == pytest.approx((0.6 + 0.6 + 1.3) / 3)
    assert "underfitting" not in kinds(diagnose(log, TrainConfig()))


def test_high_train_loss_and_a_big_gap_is_one_verdict_underfitting():
    log = make_log([1.3, 1.25, 1.2, 1.2, 1.2], [1.9, 1.85, 1.8])  # high train loss AND a big gap
    findings, new = suggest_v2(TrainConfig(), log)
    assert kinds(findings) == ["underfitting"]  # never "overfitting" and "underfitting" for the same run
    assert verdict(findings) == "Underfitting"
    assert "eval split" in findings[0].message
    assert new["rank"] == 32 and new["learning_rate"] == pytest.approx(3e-4)  # underfitting's changes only
    TrainConfig.from_dict(new)  # still a valid config
    text = report(findings, new, TrainConfig())
    assert text.startswith("**Verdict: Underfitting.**") and "overfitting" not in text


def test_final_eval_preferred_and_log_read_from_run_dir(tmp_path):
    log = make_log([0.3] * 5, [0.5, 0.45], final_eval=0.9)
    (tmp_path / "trainer_log.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")
    s = summarize(tmp_path)
    assert s["eval_loss"] == 0.9 and s["last_eval_loss"] == 0.45
    assert kinds(diagnose(tmp_path)) == ["overfitting"]


def test_compare_runs_table(tmp_path):
    a = {
        "run_id": "a",
        "state": "completed",
        "config": TrainConfig(rank=16).to_dict(),
        "metrics": {"eval_loss": 0.8, "global_step": 50},
        "log": make_log([0.4] * 5, [1.0, 0.8]),
        "adapter_path": "adapters/a",
    }
    b = {
        "run_id": "b",
        "state": "completed",
        "config": TrainConfig(rank=8, learning_rate=1e-4).to_dict(),
        "metrics": {"eval_loss": 0.6, "global_step": 40},
        "log": make_log([0.55] * 5, [0.9, 0.6]),
    }
    c = {"run_id": "c", "state": "failed", "config": {}, "metrics": {}}
    rows = compare_runs([a, b, c])
    assert [r["run"] for r in rows] == ["a", "b", "c"]
    assert [r["best"] for r in rows] == [False, True, False]
    assert rows[0]["findings"] == "overfitting" and rows[1]["findings"] == ""
    assert rows[1]["rank"] == 8 and rows[1]["lr"] == 1e-4 and rows[0]["gap"] == pytest.approx(0.4)
    assert rows[2]["eval_loss"] is None


def test_report_lists_the_config_diff():
    log = make_log([0.5, 0.4, 0.35, 0.3, 0.3], [1.0, 0.7, 0.68, 0.7, 0.75])
    cfg = TrainConfig(run_name="r")
    findings, new = suggest_v2(cfg, log)
    text = report(findings, new, cfg)
    assert "**overfitting**" in text and "| rank | 16 | 8 |" in text and "| run_name | r | r-v2 |" in text
