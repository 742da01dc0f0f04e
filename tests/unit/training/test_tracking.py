"""W&B tracking: a real offline run on the tiny Qwen3 writes real wandb run files (read back record by record), the
tracking record the Training tab shows, and the mode rules."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from wandb.proto import wandb_internal_pb2 as pb

from common.tracking import wandb_mode
from evaluation.tracking import log_evaluation
from tests.support.tiny_qwen3 import save_tiny_qwen3
from training.config import resolve
from training.tracking import read_tracking, tracking_markdown
from training.train import train

BLOCK = 32768


def read_wandb_records(path: Path) -> list[pb.Record]:
    """The .wandb file is a LevelDB-style log (7-byte W&B header, then crc32c/len/type chunks in 32 KiB blocks)."""
    raw = path.read_bytes()
    assert raw[:4] == b":W&B", "not a wandb transaction log"
    pos, out, buf = 7, [], b""
    while pos + 7 <= len(raw):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left
            continue
        length, kind = struct.unpack("<HB", raw[pos + 4 : pos + 7])
        if length == 0 and kind == 0:
            pos += left  # zero padding at the end of a block
            continue
        chunk = raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk  # FULL/FIRST start a record; MIDDLE/LAST continue it
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
            buf = b""
    return out


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    tiny = save_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3-wandb"), init_std=0.2)
    out = tmp_path_factory.mktemp("wandb-out")
    cfg = resolve(
        None,
        dict(
            base_model=str(tiny),
            load_in_4bit=False,
            cpu_dtype="float32",
            rank=8,
            alpha=16,
            learning_rate=1e-2,
            micro_batch_size=8,
            grad_accum=1,
            max_steps=4,
            warmup_ratio=0.0,
            eval_steps=2,
            save_steps=4,
            logging_steps=1,
            output_dir=str(out / "runs"),
            adapters_dir=str(out / "adapters"),
            run_name="wandb-run",
            early_stopping_patience=0,
            wandb_project="reply-arena-test",
        ),
    )
    run_dir = out / "runs" / "wandb-run"
    run_dir.mkdir(parents=True)
    final = train(cfg, run_dir)
    return run_dir, final


@pytest.mark.slow
def test_offline_run_writes_real_wandb_files(tracked_run, monkeypatch):
    run_dir, final = tracked_run
    assert final["state"] == "completed"
    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    recs = read_wandb_records(files[0])
    kinds = [r.WhichOneof("record_type") for r in recs]
    assert "run" in kinds and "exit" in kinds
    run = next(r.run for r in recs if r.WhichOneof("record_type") == "run")
    assert run.project == "reply-arena-test" and run.display_name == "wandb-run"
    config = {
        i.key: json.loads(i.value_json)
        for r in recs
        if r.WhichOneof("record_type") == "config"
        for i in r.config.update
    }
    config.update(
        {
            i.key: json.loads(i.value_json)
            for r in recs
            if r.WhichOneof("record_type") == "run"
            for i in r.run.config.update
        }
    )
    assert config["rank"] == 8 and config["max_steps"] == 4
    sha = final["metrics"]["dataset_sha256"]
    assert config["dataset"]["sha256"] == sha
    history = [
        {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
        for r in recs
        if r.WhichOneof("record_type") == "history"
    ]
    keys = set().union(*history)
    assert {"train/loss", "eval/loss", "train/tokens_per_s", "train/learning_rate"} <= keys
    losses = [h["train/loss"] for h in history if "train/loss" in h]
    assert len(losses) == 4 and all(isinstance(x, float) for x in losses)
    summary = {}
    for r in recs:
        if r.WhichOneof("record_type") == "summary":
            summary.update({i.key: json.loads(i.value_json) for i in r.summary.update})
    assert summary["dataset_sha256"] == sha and summary["eval_loss"] == pytest.approx(final["metrics"]["eval_loss"])
    # the local JSONL stays complete and is what the UI reads
    assert (run_dir / "trainer_log.jsonl").is_file()
    info = read_tracking(run_dir)
    assert info.mode == "offline" and info.url is None and Path(info.local_dir) == files[0].parent
    md = tracking_markdown(info)
    assert f"wandb sync {info.local_dir}" in md and "offline" in md
    st = json.loads((run_dir / "status.json").read_text())
    assert st["wandb_dir"] == info.local_dir


def test_mode_rules_and_messages():
    assert wandb_mode({}) == "offline"
    assert wandb_mode({"WANDB_API_KEY": "k"}) == "online"
    assert wandb_mode({"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}) == "offline"
    assert wandb_mode({"WANDB_MODE": "disabled"}) == "disabled"
    assert "no tracking record" in tracking_markdown(None)
    assert read_tracking("/nonexistent") is None


def test_evaluation_report_goes_to_wandb_only_online(tmp_path):
    info = log_evaluation(
        "reply-arena-test",
        "eval-x",
        {"n_items": 3},
        {"win_rates": (["versus", "win"], [["base", 0.6]])},
        report_dir=tmp_path,
        mode=wandb_mode({}),
    )
    assert info.mode == "offline" and "WANDB_API_KEY" in info.note
    assert not (tmp_path / "wandb").exists()
