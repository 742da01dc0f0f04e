"""Multi-GPU runs through accelerate launch: the commands built (1/2/4 GPUs, DDP vs FSDP), the refusals, and REAL
2-process runs on the CPU (gloo, through the same `accelerate launch --multi_gpu` command) of the trainer and of the
scaling benchmark. No GPU needed; the GPU-only parts (NCCL, FSDP) are what bench/gpu_train.py --gpus 2 measures.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.run_helpers import tiny_run_config
from tests.support.run_helpers import wait_for as _wait_for
from tests.support.tiny_qwen3 import save_tiny_qwen3
from training.config import TrainConfig, validate
from training.launch import (
    CPU_PROCESSES_ENV,
    accelerate_args,
    build_command,
    build_env,
    check_gpus,
    decoder_layer_class,
    launch_spec,
)
from training.runner import RunManager, pid_alive

ROOT = Path(__file__).resolve().parents[3]
WAIT = 240  # two processes on a 2-core box that other test runs may share


def cfg(**kw) -> TrainConfig:
    return TrainConfig.from_dict({"load_in_4bit": False, **kw})


def split(cmd: list[str]) -> tuple[dict[str, str | bool], list[str]]:
    """accelerate's options as {flag: value or True} and the training module part (from `-m training.train`)."""
    i = cmd.index("training.train") - 1
    opts: dict[str, str | bool] = {}
    head = cmd[3:i]
    k = 0
    while k < len(head):
        if k + 1 < len(head) and not head[k + 1].startswith("--"):
            opts[head[k]] = head[k + 1]
            k += 2
        else:
            opts[head[k]] = True
            k += 1
    return opts, cmd[i:]


# ---- the commands ------------------------------------------------------------------------------------------------
def test_one_gpu_or_cpu_is_the_plain_trainer(tmp_path):
    plain = ["/py", "-m", "training.train", "--config", str(tmp_path / "run.yaml"), "--run-dir", str(tmp_path)]
    for gpus in (None, [3]):
        assert build_command(cfg(gpus=gpus), tmp_path, "/py") == plain
    assert build_command(cfg(gpus=[0]), tmp_path, "/py", resume=True) == plain + ["--resume"]
    assert build_env(cfg(gpus=[3]), base={}) == {"CUDA_VISIBLE_DEVICES": "3"}
    # no list: the first visible GPU alone (a process seeing two would get nn.DataParallel, which TRL's DPO refuses)
    assert build_env(cfg(gpus=None), base={}) == {"CUDA_VISIBLE_DEVICES": "0"}
    assert build_env(cfg(gpus=None), base={"CUDA_VISIBLE_DEVICES": "5,6"}) == {"CUDA_VISIBLE_DEVICES": "5"}
    assert build_env(cfg(gpus=None), base={"CUDA_VISIBLE_DEVICES": ""}) == {}  # no GPU stays no GPU
    cmd, env = launch_spec(cfg(gpus=[1]), tmp_path, "/py", env={})
    assert cmd == plain and env["CUDA_VISIBLE_DEVICES"] == "1" and "--main_process_port" not in cmd


@pytest.mark.parametrize("gpus", [[0, 1], [0, 1, 2, 3]])
def test_several_gpus_launch_accelerate_ddp(tmp_path, gpus):
    cmd = build_command(cfg(gpus=gpus), tmp_path, "/py", resume=True, port=29611)
    assert cmd[:3] == ["/py", "-m", "accelerate.commands.launch"]
    opts, train = split(cmd)
    assert opts["--num_processes"] == str(len(gpus)) and opts["--num_machines"] == "1"
    assert (
        opts["--mixed_precision"] == "bf16" and opts["--multi_gpu"] is True and opts["--main_process_port"] == "29611"
    )
    assert not any(k.startswith("--fsdp") or k == "--use_fsdp" for k in opts)
    assert train == [
        "-m",
        "training.train",
        "--config",
        str(tmp_path / "run.yaml"),
        "--run-dir",
        str(tmp_path),
        "--resume",
    ]
    env = build_env(cfg(gpus=gpus), base={})
    assert env["CUDA_VISIBLE_DEVICES"] == ",".join(map(str, gpus)) and int(env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"]) >= 60
    # the runner's spec picks a free rendezvous port
    cmd, _ = launch_spec(cfg(gpus=gpus), tmp_path, "/py", env={})
    assert int(split(cmd)[0]["--main_process_port"]) > 0


def test_gpu_indices_follow_an_existing_cuda_visible_devices():
    assert build_env(cfg(gpus=[0, 1]), base={"CUDA_VISIBLE_DEVICES": "4,5,6"})["CUDA_VISIBLE_DEVICES"] == "4,5"
    assert build_env(cfg(gpus=[2]), base={"CUDA_VISIBLE_DEVICES": "4,5,6"})["CUDA_VISIBLE_DEVICES"] == "6"


def test_fsdp_flags_and_decoder_layer_class(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}))
    cmd = build_command(cfg(gpus=[0, 1], distributed="fsdp", base_model=str(model)), tmp_path, "/py")
    opts, train = split(cmd)
    assert opts["--use_fsdp"] is True and "--multi_gpu" not in opts  # accelerate refuses both together
    assert opts["--fsdp_version"] == "2" and opts["--fsdp_reshard_after_forward"] == "true"  # FSDP2 FULL_SHARD
    assert (
        opts["--fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
        and opts["--fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    )
    assert opts["--fsdp_transformer_layer_cls_to_wrap"] == "Qwen3DecoderLayer"
    a1 = accelerate_args(2, fsdp=True, fsdp_version=1)
    v1 = dict(zip(a1, a1[1:]))
    assert (
        v1["--fsdp_sharding_strategy"] == "FULL_SHARD" and v1["--fsdp_use_orig_params"] == "true"
    )  # FSDP1 still buildable
    assert (
        opts["--num_processes"] == "2" and opts["--mixed_precision"] == "bf16" and train[:2] == ["-m", "training.train"]
    )
    assert decoder_layer_class("") == "LlamaDecoderLayer"  # the embedded SmolLM2
    assert decoder_layer_class("Qwen/Qwen3-8B") == "Qwen3DecoderLayer"  # not cached here: named from the id


def test_accelerate_itself_accepts_the_commands(tmp_path):
    """Parse and validate with accelerate 1.15's own CLI, and check the variables it hands the workers."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    v1 = [
        "/py",
        *accelerate_args(2, fsdp=True, fsdp_version=1, fsdp_layer_cls="Qwen3DecoderLayer"),
        "-m",
        "training.train",
        "--config",
        str(tmp_path / "run.yaml"),
        "--run-dir",
        str(tmp_path),
    ]
    for mode in ("ddp", "fsdp", "fsdp1"):
        c = cfg(gpus=[0, 1], distributed=mode[:4], base_model="Qwen/Qwen3-8B")
        cmd = v1 if mode == "fsdp1" else build_command(c, tmp_path, "/py", port=29612)
        args, _, _ = _validate_launch_command(launch_command_parser().parse_args(cmd[3:]))
        assert args.num_processes == 2 and args.module and args.training_script == "training.train"
        assert args.training_script_args == ["--config", str(tmp_path / "run.yaml"), "--run-dir", str(tmp_path)]
        assert (args.multi_gpu, bool(args.use_fsdp)) == ((True, False) if mode == "ddp" else (False, True))
        env = prepare_multi_gpu_env(args)
        assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
        if mode == "fsdp":
            assert (
                env["ACCELERATE_USE_FSDP"] == "true"
                and env["FSDP_VERSION"] == "2"
                and env["FSDP_RESHARD_AFTER_FORWARD"] == "true"
            )
            assert (
                env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "Qwen3DecoderLayer"
                and env["FSDP_STATE_DICT_TYPE"] == "SHARDED_STATE_DICT"
            )
        if mode == "fsdp1":
            assert (
                env["FSDP_VERSION"] == "1"
                and env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD"
                and env["FSDP_USE_ORIG_PARAMS"] == "true"
            )


def test_qlora_with_fsdp_and_unknown_modes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="FSDP .*4-bit QLoRA"):
        validate(TrainConfig.from_dict({"gpus": [0, 1], "distributed": "fsdp", "load_in_4bit": True}))
    with pytest.raises(ValueError, match="distributed must be ddp or fsdp"):
        validate(cfg(distributed="zero3"))
    assert validate(cfg(gpus=[0, 1], distributed="fsdp"), cuda=True) == []
    assert any("only when gpus lists 2" in w for w in validate(cfg(gpus=[0], distributed="fsdp"), cuda=True))
    assert (
        validate(TrainConfig.from_dict({"gpus": [0, 1], "load_in_4bit": True}), cuda=True) == []
    )  # QLoRA + DDP is fine
    mgr = RunManager(tmp_path / "data", tmp_path / "adapters")
    with pytest.raises(ValueError, match="4-bit QLoRA"):
        mgr.start({"gpus": [0, 1], "distributed": "fsdp", "load_in_4bit": True})
    assert not list((tmp_path / "data" / "runs").iterdir())


def test_more_gpus_than_visible_are_refused_before_launch(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"asks for 3 GPU\(s\) \(0,1,2\), but this machine shows 2 \(GPUs 0-1\)"):
        check_gpus(cfg(gpus=[0, 1, 2]), visible=2)
    with pytest.raises(ValueError, match="shows 1"):
        check_gpus(cfg(gpus=[1]), visible=1)
    check_gpus(cfg(gpus=[0, 1]), visible=2)
    check_gpus(cfg(gpus=None), visible=1)
    import torch

    if not torch.cuda.is_available():
        check_gpus(cfg(gpus=[0, 1, 2, 3]))  # no CUDA here: nothing to compare with, the config may be for a GPU host
    import training.runner as runner

    monkeypatch.setattr(runner, "check_gpus", functools.partial(check_gpus, visible=1))
    mgr = RunManager(tmp_path / "data", tmp_path / "adapters")
    with pytest.raises(ValueError, match="asks for 2 GPU"):
        mgr.start(cfg(gpus=[0, 1], run_name="too-many"))
    assert not (tmp_path / "data" / "runs" / "too-many").exists() and mgr.active_run() is None


# ---- real 2-process runs on the CPU ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3-multigpu"), init_std=0.2)


def run_config(tiny_dir: Path, **kw) -> TrainConfig:
    return tiny_run_config(tiny_dir, **{"max_steps": 3, "eval_steps": 3, "save_steps": 3, **kw})


def wait_for(mgr: RunManager, run_id: str, pred, timeout: float = WAIT):
    return _wait_for(mgr, run_id, pred, timeout, tail=60)


def rank_results(log: str) -> dict[int, dict]:
    """The JSON line each rank's `training.train` prints when it ends."""
    out = {}
    for line in log.splitlines():
        if line.startswith("{") and '"rank"' in line:
            rec = json.loads(line)
            out[rec["rank"]] = rec
    return out


def workers_of(run_dir: Path) -> list[int]:
    """Live processes whose command line names this run folder (the launcher and its workers)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(run_dir).encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_two_process_run_one_log_writer_one_adapter(tiny_dir, tmp_path):
    mgr = RunManager(tmp_path / "data", tmp_path / "adapters")
    h = mgr.start(run_config(tiny_dir, run_name="ddp2"), env={CPU_PROCESSES_ENV: "2"})
    st = wait_for(mgr, h.run_id, lambda s: not s.active)
    log = (h.run_dir / "train.log").read_text()
    assert st.state == "completed", f"{st.error}\n{log[-4000:]}"
    rc = mgr._procs[h.run_id].wait(timeout=30)
    log = (h.run_dir / "train.log").read_text()
    assert rc == 0, log[-6000:]  # the launcher exits 0 only when every rank did
    assert (
        "accelerate.commands.launch --num_processes 2 --num_machines 1 --mixed_precision no" in log
        and "--multi_gpu" in log
    )
    ranks = rank_results(log)
    assert sorted(ranks) == [0, 1] and all(r["state"] == "completed" for r in ranks.values())
    assert ranks[0]["adapter_path"] and ranks[1]["adapter_path"] is None  # rank 0 alone saves
    assert "[rank 0]" in log and "[rank 1]" in log
    assert all(f"Rank {r} of 2 closed its process group." in log for r in (0, 1))

    recs = st.history  # trainer_log.jsonl: one writer, so every event exactly once
    assert [r["step"] for r in recs if r["event"] == "train"] == [1, 2, 3]
    assert [r["event"] for r in recs].count("begin") == 1 and [r["event"] for r in recs].count("end") == 1
    assert [r["step"] for r in recs if r["event"] == "eval"] == [0, 3]
    assert st.metrics["formatting"]["distributed"]["world_size"] == 2 and st.metrics["global_step"] == 3
    status = json.loads((h.run_dir / "status.json").read_text())
    assert status["world_size"] == 2 and status["state"] == "completed"

    adapters = tmp_path / "adapters"
    assert sorted(p.name for p in adapters.iterdir()) == ["ddp2"]  # one folder, no temp folder of another rank
    import torch
    from peft import PeftModel

    from generation import ModelConfig, load_base

    base = load_base(ModelConfig(base_model=str(tiny_dir), device="cpu", cpu_dtype="float32"))
    ids = base.tokenizer("Coffee before code?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = base.model(input_ids=ids).logits
        pm = PeftModel.from_pretrained(base.model, str(adapters / "ddp2"))
        after = pm(input_ids=ids).logits
    assert not torch.allclose(before, after, atol=1e-4)  # the trained (non-zero) LoRA B matrices were saved
    assert not workers_of(h.run_dir)


@pytest.mark.slow
def test_two_process_dpo_run_one_log_writer_one_adapter_with_lineage(tiny_dir, tmp_path):
    """DPO (training/dpo.py) on two processes through the same launcher: rank 0 alone writes the log and the adapter
    (with its lineage), each rank trains half of every optimizer step's pairs."""
    from arena.lineage import LINEAGE_FILE
    from arena.preferences import CleaningConfig, build_from_store
    from arena.store import VoteStore
    from tests.support.preference_votes import synthetic_votes

    with VoteStore(tmp_path / "votes") as store:
        synthetic_votes(store)
        build_from_store(store, tmp_path / "prefs", CleaningConfig(eval_fraction=0.2))
    mgr = RunManager(tmp_path / "data", tmp_path / "adapters")
    conf = run_config(
        tiny_dir,
        run_name="dpo-ddp2",
        kind="dpo",
        dataset=str(tmp_path / "prefs"),
        min_pairs=20,
        grad_accum=2,
        learning_rate=2e-3,
    )
    h = mgr.start(conf, env={CPU_PROCESSES_ENV: "2"})
    st = wait_for(mgr, h.run_id, lambda s: not s.active)
    log = (h.run_dir / "train.log").read_text()
    assert st.state == "completed", f"{st.error}\n{log[-4000:]}"
    rc = mgr._procs[h.run_id].wait(timeout=60)
    log = (h.run_dir / "train.log").read_text()
    assert rc == 0, log[-6000:]  # the launcher exits 0 only when every rank did
    assert "--multi_gpu" in log and "-m training.dpo" in log
    ranks = rank_results(log)
    assert sorted(ranks) == [0, 1] and all(r["state"] == "completed" for r in ranks.values())
    assert ranks[0]["adapter_path"] and ranks[1]["adapter_path"] is None
    assert "Rank 1 of 2 (DDP): 4 x 1 pairs per rank per optimizer step" in log  # grad_accum 2 shared by 2 ranks
    assert all(f"Rank {r} of 2 closed its process group." in log for r in (0, 1))  # a clean exit, not gloo's abort
    recs = st.history
    assert [r["step"] for r in recs if r["event"] == "train"] == [1, 2, 3]
    assert any(r.get("rewards/margins") is not None for r in recs if r["event"] == "train")
    assert st.metrics["world_size"] == 2 and st.metrics["global_step"] == 3
    assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == ["dpo-ddp2"]
    assert (tmp_path / "adapters" / "dpo-ddp2" / LINEAGE_FILE).is_file()
    assert not workers_of(h.run_dir)


@pytest.mark.slow
def test_stop_reaches_every_rank_and_all_stop_at_the_same_step(tiny_dir, tmp_path):
    mgr = RunManager(tmp_path / "data", tmp_path / "adapters")
    h = mgr.start(
        run_config(tiny_dir, run_name="ddp-stop", max_steps=400, eval_steps=200, save_steps=200),
        env={CPU_PROCESSES_ENV: "2"},
    )
    wait_for(mgr, h.run_id, lambda s: s.state == "running" and s.step >= 2)
    st = mgr.stop(h.run_id, timeout=90)
    log = (h.run_dir / "train.log").read_text()
    assert st.state == "stopped" and not st.active, log[-4000:]
    assert not pid_alive(h.pid) and not workers_of(h.run_dir)  # the launcher and both workers are gone
    ends = {
        int(m[1]): (int(m[2]), m[3], m[4])
        for m in re.finditer(
            r"Rank (\d) of 2 finished training at step (\d+) \(stop requested: (\w+); own stop signal: (\w+)\)", log
        )
    }
    assert sorted(ends) == [0, 1], log[-4000:]
    assert ends[0] == ends[1] == (st.step, "True", "True")  # each rank's SIGTERM handler fired; same step on both
    assert 2 <= st.step < 400
    ranks = rank_results(log)
    assert {r: (v["state"], v["step"]) for r, v in ranks.items()} == {0: ("stopped", st.step), 1: ("stopped", st.step)}
    assert (h.run_dir / "checkpoints" / f"checkpoint-{st.step}" / "trainer_state.json").is_file()
    assert [r["step"] for r in st.history if r["event"] == "train"] == list(range(1, st.step + 1))
    assert mgr.active_run() is None and not (tmp_path / "adapters" / "ddp-stop").exists()


@pytest.mark.slow
def test_bench_scaling_runs_its_multi_process_path_on_cpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "bench/gpu_train.py", "--gpus", "2", "--cpu-smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "accelerate.commands.launch --num_processes 2" in proc.stdout
    (path,) = tmp_path.glob("gpu-train-ddp-cpu-smoke-*.json")
    r = json.loads(path.read_text())
    assert sorted(r["modes"]) == ["bf16", "qlora"]
    for mode, res in r["modes"].items():
        one, two = res["one_gpu"], res["n_gpus"]
        assert (one["world"], one["ddp"], two["world"], two["ddp"]) == (1, False, 2, True)
        assert (one["mode"], two["mode"], two["grad_ckpt"], two["quantized"]) == (
            mode,
            mode,
            mode == "qlora",
            False,
        )  # no 4-bit on CPU
        assert two["replicas_in_sync"] and two["tokens"] > 1.8 * one["tokens"]  # both ranks' tokens are counted
        assert (
            res["scaling"] == pytest.approx(two["tokens_per_s"] / one["tokens_per_s"]) and res["target_scaling"] == 1.8
        )
        assert f"{mode}: scaling = tok/s(2) / tok/s(1)" in proc.stdout
