"""Training config: the seed's defaults, YAML round trip, presets, and every refusal before anything loads."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.tiny_qwen3 import build_model, build_tokenizer
from training.config import (
    DEFAULT_TARGETS,
    FIELD_TYPES,
    PRESETS,
    TrainConfig,
    field_help,
    parse_set,
    preset_config,
    resolve,
    validate,
    validate_targets,
)
from training.train import _parser, build_config, load_pairs

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_are_the_seed_recipe():
    c = TrainConfig()
    assert (c.rank, c.alpha, c.dropout) == (16, 16, 0.1)
    assert c.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (c.learning_rate, c.epochs, c.micro_batch_size, c.grad_accum) == (2e-4, 2, 4, 4)
    assert (c.warmup_ratio, c.weight_decay, c.max_grad_norm) == (0.03, 0.01, 1.0)
    assert (c.load_in_4bit, c.bnb_4bit_quant_type, c.bnb_4bit_use_double_quant, c.bnb_4bit_compute_dtype) == (
        True,
        "nf4",
        True,
        "bfloat16",
    )
    assert (c.eval_steps, c.save_steps, c.save_total_limit, c.load_best_model_at_end) == (50, 50, 3, True)
    assert (c.early_stopping_patience, c.early_stopping_threshold, c.seed, c.max_seq_len, c.max_steps) == (
        3,
        0.01,
        42,
        512,
        -1,
    )
    assert c.base_model == "" and c.dataset == "" and c.gpus is None and c.wandb_project


def test_every_field_has_help_metadata():
    """The help text (with where the default comes from) lives in the field's metadata, as in TRL's SFTConfig."""
    for f in dataclasses.fields(TrainConfig):
        text = f.metadata.get("help", "")
        assert len(text) > 20 and text.endswith(".") and field_help(f.name) == text, f.name


def test_cli_help_and_flags_come_from_the_metadata():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "training.train", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    shown = "".join(out.stdout.split())  # argparse re-wraps the lines (also at hyphens)
    for name in FIELD_TYPES:
        assert "".join(f"--{name} VALUE {field_help(name)} (default: ".split()) in shown, name
    ns = _parser().parse_args(["--preset", "cpu-demo", "--rank", "4", "--set", "alpha=8", "--gpus", "0,1"])
    cfg = build_config(ns)
    assert (cfg.rank, cfg.alpha, cfg.gpus, cfg.max_steps) == (4, 8, [0, 1], PRESETS["cpu-demo"]["max_steps"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["--ran", "4"])  # no abbreviations: a typo is an error, not another key


def test_yaml_round_trip(tmp_path):
    c = resolve("cpu-demo", {"run_name": "rt", "gpus": [0, 1], "learning_rate": 3e-4})
    path = c.to_yaml(tmp_path / "c.yaml")
    back = TrainConfig.from_yaml(path)
    assert back == c
    assert yaml.safe_load(path.read_text())["gpus"] == [0, 1]


def test_yaml_with_preset_key_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("preset: cpu-demo\nrank: 4\nlearning_rate: 2e-3\n")  # PyYAML reads 2e-3 as a string: coerced
    c = TrainConfig.from_yaml(p)
    assert c.rank == 4 and c.learning_rate == pytest.approx(2e-3) and c.max_steps == PRESETS["cpu-demo"]["max_steps"]


def test_presets():
    q = preset_config("qwen3-8b-qlora")
    assert q.base_model == "Qwen/Qwen3-8B" and q.load_in_4bit and q.rank == 16 and q.learning_rate == 2e-4
    d = preset_config("cpu-demo")
    assert d.base_model == "" and d.dataset == "" and not d.load_in_4bit
    assert 20 <= d.max_steps <= 40 and d.eval_steps == 10 and d.learning_rate == 1e-3 and d.rank == 8
    assert validate(d, cuda=False) == []  # no 4-bit warning for the CPU preset
    with pytest.raises(ValueError, match="Unknown preset"):
        resolve("nope")


def test_overrides_are_coerced_from_strings():
    c = resolve(
        "cpu-demo",
        parse_set(
            [
                "learning_rate=5e-4",
                "target_modules=q_proj,v_proj",
                "gpus=0,2",
                "load_in_4bit=false",
                "epochs=3",
                "rank=32",
            ]
        ),
    )
    assert c.learning_rate == 5e-4 and c.target_modules == ["q_proj", "v_proj"] and c.gpus == [0, 2]
    assert c.load_in_4bit is False and c.epochs == 3.0 and c.rank == 32
    assert resolve(None, {"gpus": "none", "load_in_4bit": False}).gpus is None


@pytest.mark.parametrize(
    "key,value,match",
    [
        ("rank", 0, "rank must be a positive"),
        ("rank", -4, "rank must be a positive"),
        ("alpha", 0, "alpha must be positive"),
        ("learning_rate", 0, "Learning rate must be positive"),
        ("learning_rate", -1e-4, "Learning rate must be positive"),
        ("dropout", 1.0, r"dropout must be in \[0, 1\)"),
        ("dropout", -0.1, r"dropout must be in \[0, 1\)"),
        ("epochs", 0, "Epochs must be positive"),
        ("max_steps", 0, "max_steps must be"),
        ("micro_batch_size", 0, "micro_batch_size"),
        ("eval_fraction", 0.0, "eval split"),
        ("save_steps", 15, "multiple of eval_steps"),
        ("run_name", "a/b", "run_name"),
        ("gpus", [0, 0], "distinct"),
        ("dataset", "/no/such/dataset.jsonl", "does not exist"),
        ("target_modules", [], "target_modules is empty"),
    ],
)
def test_invalid_values_are_refused(key, value, match):
    with pytest.raises(ValueError, match=match) as err:
        resolve(None, {key: value})
    msg = str(err.value)
    assert msg.endswith(".") and "\n" not in msg  # one sentence for the UI


def test_unknown_keys_refused_in_overrides_and_yaml(tmp_path):
    with pytest.raises(ValueError, match="Unknown config key.*lora_rank"):
        resolve("cpu-demo", {"lora_rank": 8})
    p = tmp_path / "bad.yaml"
    p.write_text("rank: 8\nlearnin_rate: 1e-3\n")
    with pytest.raises(ValueError, match="learnin_rate"):
        TrainConfig.from_yaml(p)


def test_wrong_types_refused():
    with pytest.raises(ValueError, match="rank must be a whole number"):
        resolve(None, {"rank": "eight"})
    with pytest.raises(ValueError, match="true or false"):
        resolve(None, {"load_in_4bit": "maybe"})
    with pytest.raises(ValueError, match="key=value"):
        parse_set(["rank8"])


def test_4bit_without_cuda_falls_back_with_warning():
    cfg = TrainConfig(load_in_4bit=True)
    warns = validate(cfg, cuda=False)
    assert len(warns) == 1 and "4-bit" in warns[0] and "CPU" in warns[0]
    assert validate(cfg, cuda=True) == []
    import torch

    if not torch.cuda.is_available():  # resolve() surfaces the fallback as a warning on this machine
        with pytest.warns(UserWarning, match="4-bit"):
            resolve("qwen3-8b-qlora")


def test_empty_eval_split_refused_before_model_load(tmp_path):
    p = tmp_path / "pairs.jsonl"
    p.write_text(
        "\n".join(json.dumps({"tweet": f"t{i}", "reply": f"reply number {i}", "split": "train"}) for i in range(5))
    )
    with pytest.raises(ValueError, match="eval split .* is empty"):
        load_pairs(resolve(None, {"dataset": str(p), "load_in_4bit": False}))


def test_unknown_target_module_refused_on_real_model():
    model = build_model(build_tokenizer(), seed=0)
    validate_targets(model, DEFAULT_TARGETS)  # the Qwen3 names all exist
    with pytest.raises(ValueError) as err:
        validate_targets(model, ["q_proj", "c_attn"])
    msg = str(err.value)
    assert "c_attn" in msg and "q_proj" not in msg.split(";")[0]
    for have in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
        assert have in msg.split("it has:")[1]
