"""The trainer on a tiny random Qwen3 (seconds), and the cpu-demo preset end to end on the embedded SmolLM2 (slow)."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.support.tiny_qwen3 import save_tiny_qwen3
from training.callbacks import StopFlag
from training.config import TrainConfig, resolve
from training.fastpath import auto_rows, fast_plan
from training.train import CHECKPOINTS, last_checkpoint, load_pairs, train

ROOT = Path(__file__).resolve().parents[3]
LOG_KEYS = {"step", "loss", "eval_loss", "lr", "epoch", "tokens_per_s", "elapsed", "eta_s", "max_steps", "status"}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3-train"), init_std=0.2)  # learnable by LoRA alone


def _machine_busy_s() -> float:
    """Seconds of CPU time all processes have used since boot (from /proc/stat), to tell a shared box from a slow
    run."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def tiny_config(tiny_dir: Path, out: Path, name: str, **kw) -> TrainConfig:
    values = dict(
        base_model=str(tiny_dir),
        load_in_4bit=False,
        cpu_dtype="float32",
        rank=16,
        alpha=32,
        learning_rate=1e-2,
        micro_batch_size=8,
        grad_accum=1,
        max_steps=12,
        warmup_ratio=0.0,
        eval_steps=4,
        save_steps=4,
        logging_steps=1,
        output_dir=str(out / "runs"),
        adapters_dir=str(out / "adapters"),
        run_name=name,
        early_stopping_patience=0,
    )
    values.update(kw)
    return resolve(None, values)


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "trainer_log.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("train-out")
    cfg = tiny_config(tiny_dir, out, "tiny-run")
    run_dir = out / "runs" / "tiny-run"
    run_dir.mkdir(parents=True)
    final = train(cfg, run_dir)
    return cfg, run_dir, final


def test_loss_decreases_on_reply_tokens(trained):
    _, run_dir, final = trained
    recs = _log(run_dir)
    losses = [r["loss"] for r in recs if r["event"] == "train"]
    evals = [(r["step"], r["eval_loss"]) for r in recs if r["event"] == "eval"]
    assert len(losses) == 12 and evals[0][0] == 0  # eval_on_start gives the base model's eval loss
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3
    assert evals[-1][1] < evals[0][1] - 0.3
    m = final["metrics"]
    assert m["eval_loss"] < m["base_eval_loss"] and m["global_step"] == 12


def test_adapter_folder_has_everything_the_app_needs(trained, tiny_dir):
    cfg, run_dir, final = trained
    adapter = Path(final["adapter_path"])
    assert final["state"] == "completed" and adapter == Path(cfg.adapters_dir) / "tiny-run"
    for f in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "generation_config.json",
        "training_config.yaml",
        "dataset.json",
        "metrics.json",
    ):
        assert (adapter / f).is_file(), f
    acfg = json.loads((adapter / "adapter_config.json").read_text())
    assert acfg["base_model_name_or_path"] == str(tiny_dir)  # == LoadedModel.name, what adapters.py matches
    assert acfg["r"] == 16 and sorted(acfg["target_modules"]) == sorted(cfg.target_modules)
    assert TrainConfig.from_yaml(adapter / "training_config.yaml") == cfg
    data = json.loads((adapter / "dataset.json").read_text())
    assert data["sha256"] == hashlib.sha256((ROOT / "assets" / "sample_pairs.jsonl").read_bytes()).hexdigest()
    metrics = json.loads((adapter / "metrics.json").read_text())
    assert metrics["eval_loss"] == final["metrics"]["eval_loss"] and metrics["n_train"] > 100
    gen = json.loads((adapter / "generation_config.json").read_text())
    from transformers import AutoTokenizer

    im_end = AutoTokenizer.from_pretrained(tiny_dir).convert_tokens_to_ids("<|im_end|>")
    eos = gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]
    assert eos[0] == im_end
    assert not list(Path(cfg.adapters_dir).glob(".*"))  # no temp folders left behind


def test_adapter_loads_back_and_changes_the_model(trained, tiny_dir):
    from peft import PeftModel

    from generation import Engine, ModelConfig, SamplingConfig, load_base
    from generation.adapters import discover

    cfg, _, final = trained
    assert "tiny-run" in discover(Path(cfg.adapters_dir))
    base = load_base(ModelConfig(base_model=str(tiny_dir), device="cpu", cpu_dtype="float32"))
    ids = base.tokenizer("Coffee before code?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = base.model(input_ids=ids).logits
        pm = PeftModel.from_pretrained(base.model, final["adapter_path"])
        after = pm(input_ids=ids).logits
    assert not torch.allclose(before, after, atol=1e-3)
    pm.unload()
    engine = Engine(
        load_base(ModelConfig(base_model=str(tiny_dir), device="cpu", cpu_dtype="float32")), Path(cfg.adapters_dir)
    )
    r = engine.generate(
        "Coffee before code?", "lora:tiny-run", SamplingConfig(temperature=0.0, do_sample=False, max_new_tokens=8)
    )
    assert r.new_tokens > 0


def test_trainer_log_and_status(trained):
    _, run_dir, _ = trained
    recs = _log(run_dir)
    assert all(LOG_KEYS <= set(r) for r in recs if r["event"] in ("train", "eval"))
    train_recs = [r for r in recs if r["event"] == "train"]
    assert all(r["lr"] is not None and r["loss"] is not None and r["max_steps"] == 12 for r in train_recs)
    assert [r["step"] for r in train_recs] == list(range(1, 13))
    assert train_recs[-1]["eta_s"] == 0 and train_recs[-1]["tokens_per_s"] > 0
    assert recs[-1]["event"] == "end" and recs[-1]["status"] == "completed"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "completed" and status["pid"] == os.getpid() and status["adapter_path"]
    assert sorted(p.name for p in (run_dir / CHECKPOINTS).iterdir()) == [
        "checkpoint-12",
        "checkpoint-4",
        "checkpoint-8",
    ]


class StopAfter(StopFlag):
    """Behaves like a SIGTERM arriving during step `n`."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.calls = n, 0

    def is_set_anywhere(self, device=None) -> bool:
        self.calls += 1
        if self.calls >= self.n:
            self.set()
        return self.is_set()


def test_stop_saves_checkpoint_and_resume_continues(tiny_dir, tmp_path):
    cfg = tiny_config(tiny_dir, tmp_path, "stop-resume", max_steps=10, eval_steps=5, save_steps=5)
    run_dir = tmp_path / "runs" / "stop-resume"
    run_dir.mkdir(parents=True)
    st = train(cfg, run_dir, stop=StopAfter(3))
    assert st["state"] == "stopped" and st["step"] == 3 and st["adapter_path"] is None
    assert last_checkpoint(run_dir).name == "checkpoint-3"
    assert not (Path(cfg.adapters_dir) / "stop-resume").exists()  # a stopped run is resumable, not published
    st = train(cfg, run_dir, resume=True)
    assert (
        st["state"] == "completed"
        and st["metrics"]["global_step"] == 10
        and st["resumed_from"].endswith("checkpoint-3")
    )
    recs = _log(run_dir)
    begins = [r for r in recs if r["event"] == "begin"]
    assert [b["step"] for b in begins] == [0, 3]  # the second session started from the checkpoint
    steps = [r["step"] for r in recs if r["event"] == "train"]
    assert steps == list(range(1, 11))  # no step trained twice, none skipped
    assert (Path(cfg.adapters_dir) / "stop-resume" / "adapter_config.json").is_file()


def test_reads_saved_datasetdict_and_jsonl_split(tmp_path):
    from datasets import Dataset, DatasetDict

    rows = [
        {"tweet": f"tweet {i}", "reply": f"reply number {i} here", "likes": 10, "pair_id": f"p{i}", "tweet_id": f"t{i}"}
        for i in range(12)
    ]
    DatasetDict({"train": Dataset.from_list(rows[:10]), "eval": Dataset.from_list(rows[10:])}).save_to_disk(
        str(tmp_path / "dd")
    )
    data = load_pairs(resolve(None, {"dataset": str(tmp_path / "dd"), "load_in_4bit": False}))
    assert (len(data.train), len(data.eval)) == (10, 2) and data.eval[0]["tweet"] == "tweet 10"
    assert data.info["kind"] == "datasetdict" and len(data.info["sha256"]) == 64
    p = tmp_path / "pairs.jsonl"
    p.write_text("\n".join(json.dumps({**r, "split": "eval" if i < 3 else "train"}) for i, r in enumerate(rows)))
    data = load_pairs(resolve(None, {"dataset": str(p), "load_in_4bit": False}))
    assert (len(data.train), len(data.eval)) == (9, 3)


def test_sample_data_split_is_grouped_and_filtered():
    data = load_pairs(resolve("cpu-demo"))
    assert 150 < len(data.train) + len(data.eval) < 260  # ~56 of 260 fail the seed's filters
    assert not {r["tweet"] for r in data.train} & {r["tweet"] for r in data.eval}
    assert all(30 <= len(r["reply"]) <= 280 and "http" not in r["reply"] for r in data.train)


@pytest.mark.slow
def test_cpu_demo_preset_end_to_end(tmp_path):
    """The acceptance run: cpu-demo finishes in <= 3 minutes here and its adapter visibly changes the replies."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ru0, busy0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), _machine_busy_s(), time.time()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.train",
            "--preset",
            "cpu-demo",
            "--set",
            f"output_dir={tmp_path / 'runs'}",
            "--set",
            f"adapters_dir={tmp_path / 'adapters'}",
            "--set",
            "run_name=demo",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    wall, ru1 = time.time() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    ncpu = os.cpu_count() or 1
    others = max(0.0, (_machine_busy_s() - busy0) - cpu) / (wall * ncpu)  # share of the machine other processes used
    print(
        f"\ncpu-demo wall time: {wall:.1f} s (CPU {cpu:.0f} s on {ncpu} cores; other processes used {others:.0%} of "
        "the machine)"
    )
    if others < 0.15:  # the acceptance budget holds on an otherwise idle box (CI runs the suite alone)
        assert wall <= 180, f"cpu-demo took {wall:.0f} s"
    else:
        # Another job shared the 2 cores: wall time stretches, and so does the run's own CPU time (SMT siblings and
        # caches are shared: 392 CPU-s seen for a run that needs ~230 alone), so no time budget can be judged here.
        # The run must still complete and learn (below); bench/cpu_generate.py and the idle-box branch hold the speed.
        print(f"cpu-demo timing not judged: {others:.0%} of the box was busy with other work")
    metrics = json.loads((tmp_path / "adapters" / "demo" / "metrics.json").read_text())
    assert metrics["eval_loss"] < metrics["base_eval_loss"]  # it learned something on held-out pairs
    assert metrics["dtype"] == "bfloat16"  # the measured CPU default

    from generation import Engine, ModelConfig, SamplingConfig, load_base

    loaded = load_base(ModelConfig(base_model="", device="cpu", cache_dir=ROOT / ".cache"))
    engine = Engine(loaded, tmp_path / "adapters")
    greedy = SamplingConfig(temperature=0.0, do_sample=False, max_new_tokens=24, repetition_penalty=1.2)
    tweets = [
        json.loads(line)["tweet"] for line in (ROOT / "assets" / "heldout_tweets.jsonl").read_text().splitlines()[:3]
    ]
    pairs = [(engine.generate(t, "base", greedy).reply, engine.generate(t, "lora:demo", greedy).reply) for t in tweets]
    for (b, a), t in zip(pairs, tweets):
        print(f"TWEET {t}\n  base: {b}\n  lora: {a}")
    assert sum(b != a for b, a in pairs) >= 2
    ids = loaded.tokenizer("Naming variables is hard.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        with engine.bank.activate(None) as m:
            base_logits = m(input_ids=ids).logits.float()
        with engine.bank.activate("demo") as m:
            lora_logits = m(input_ids=ids).logits.float()
    assert (base_logits - lora_logits).abs().max() > 0.1


def test_packed_fast_path_trains_and_saves(tiny_dir, tmp_path):
    """fast_path=on forces packing on the CPU: the same trainer, rows of packed examples, loss still falls."""
    cfg = tiny_config(tiny_dir, tmp_path, "packed-run", fast_path="on", pack_tokens=256, pack_rows=2, max_steps=10)
    run_dir = tmp_path / "runs" / "packed-run"
    run_dir.mkdir(parents=True)
    final = train(cfg, run_dir)
    assert final["state"] == "completed"
    packing = final["metrics"]["formatting"]["packing"]
    assert packing["pack_tokens"] == 256 and packing["rows_per_step"] == 2 and packing["efficiency"] > 0.8
    assert packing["liger"] is False  # no CUDA here: the kernels are CUDA-only
    losses = [e["loss"] for e in _log(run_dir) if e.get("loss") is not None]
    assert losses[-1] < losses[0]
    assert (Path(final["adapter_path"]) / "adapter_config.json").is_file()


def test_fast_plan_defaults():
    cfg = resolve(None, {"load_in_4bit": False})
    assert not fast_plan(cfg, on_cuda=False).enabled  # auto: CPU keeps the padded path
    plan = fast_plan(cfg, on_cuda=True)
    assert plan.enabled and plan.liger and plan.fused_adamw and plan.compile and plan.pack_tokens == 1024
    ex = [{"input_ids": [0] * 128}] * 10
    assert auto_rows(ex, cfg, 1024) == 2  # 128 tokens x (4 x 4) examples per step = 2048 tokens = 2 rows
    assert not fast_plan(resolve(None, {"load_in_4bit": False, "fast_path": "off"}), on_cuda=True).enabled
