"""The command line and environment that start a training run: one process, or one process per GPU via `accelerate
launch`.

    1 GPU / CPU  ->  python -m training.train --config <run_dir>/run.yaml --run-dir <run_dir> [--resume]
    N > 1 GPUs   ->  python -m accelerate.commands.launch --num_processes N --num_machines 1 --mixed_precision bf16
                     --dynamo_backend no --multi_gpu [--main_process_port P] -m training.train --config ... --run-dir
                     ...
    ... fsdp     ->  the same with --use_fsdp --fsdp_version 2 --fsdp_reshard_after_forward true (= FULL_SHARD)
                     --fsdp_auto_wrap_policy TRANSFORMER_BASED_WRAP --fsdp_transformer_layer_cls_to_wrap <decoder layer>
                     --fsdp_state_dict_type SHARDED_STATE_DICT ... in place of --multi_gpu (accelerate refuses both).

FSDP version: FSDP2 (per-parameter sharding) by default. FSDP1 (--fsdp_sharding_strategy FULL_SHARD
--fsdp_use_orig_params
true, fsdp_version=1 below) failed on an H100 under accelerate 1.15 / torch 2.11 at world size 1 (its NO_SHARD
fallback):
an assertion at step 2 for tied embeddings, and a missing-key assertion when writing the checkpoint; FSDP2 completed
the same runs (checkpoints, gathered adapter). FSDP2 and DDP ran on two H200s (2026-11-30; README, bench/results).

accelerate (torch.distributed.run underneath) starts one `training.train` per GPU with RANK / LOCAL_RANK / WORLD_SIZE
set;
transformers.Trainer reads them (DDP, or FSDP from accelerate's FSDP_* variables); nothing here distributes by hand.
CUDA_VISIBLE_DEVICES is narrowed to cfg.gpus, so LOCAL_RANK i runs on the i-th listed GPU.

Stopping: the runner SIGTERMs the launcher's process group; torch.distributed.run forwards SIGTERM to every worker
(each in its own session) and waits TORCH_ELASTIC_SHUTDOWN_TIMEOUT seconds before SIGKILL, so every rank's StopFlag is
set
and the ranks agree on the step to stop at (training/callbacks.py StopFlag.is_set_anywhere all-reduces the flag).

Standard library only (the runner and the UI import it); torch is imported lazily, for the GPU count check alone.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Mapping

from .rundir import CONFIG_FILE

CPU_PROCESSES_ENV = (
    "REPLY_ARENA_CPU_PROCESSES"  # tests / dev boxes: N gloo processes on the CPU through the same launcher
)
# After SIGTERM (stop) or a failed rank, torch.distributed.run gives workers this long before SIGKILL
# (runner stop: 120 s).
SHUTDOWN_GRACE_S = 60
ACCELERATE = "accelerate.commands.launch"
FSDP_VERSION = 2
# FSDP2: reshard_after_forward=true is FULL_SHARD; each decoder layer is one shard group (PEFT's wrap policy adds the
# LoRA
# layers, transformers.Trainer does that); SHARDED_STATE_DICT: checkpoints are written shard by shard (the Trainer
# resumes from them); the final adapter is gathered to rank 0 once (training/train.py).
FSDP2_FLAGS = [
    "--use_fsdp",
    "--fsdp_version",
    "2",
    "--fsdp_reshard_after_forward",
    "true",
    "--fsdp_auto_wrap_policy",
    "TRANSFORMER_BASED_WRAP",
]
FSDP2_TAIL = [
    "--fsdp_state_dict_type",
    "SHARDED_STATE_DICT",
    "--fsdp_offload_params",
    "false",
    "--fsdp_cpu_ram_efficient_loading",
    "false",
]
# FSDP1, as first specified (use_orig_params: frozen base + trainable LoRA weights in one flat parameter); see above.
FSDP1_FLAGS = [
    "--use_fsdp",
    "--fsdp_version",
    "1",
    "--fsdp_sharding_strategy",
    "FULL_SHARD",
    "--fsdp_auto_wrap_policy",
    "TRANSFORMER_BASED_WRAP",
]
FSDP1_TAIL = [
    "--fsdp_use_orig_params",
    "true",
    "--fsdp_state_dict_type",
    "SHARDED_STATE_DICT",
    "--fsdp_sync_module_states",
    "true",
    "--fsdp_backward_prefetch",
    "BACKWARD_PRE",
    "--fsdp_offload_params",
    "false",
    "--fsdp_cpu_ram_efficient_loading",
    "false",
]


def num_processes(cfg, cpu_processes: int = 0) -> int:
    """One process per listed GPU; `cpu_processes` > 1 forces that many CPU processes (gloo) for tests."""
    if cpu_processes and cpu_processes > 1:
        return int(cpu_processes)
    return len(cfg.gpus) if cfg.gpus else 1


def free_port() -> int:
    """A free TCP port for the rendezvous (another job on the host may hold torch's default 29500)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def decoder_layer_class(base_model: str) -> str | None:
    """The decoder block class FSDP wraps one by one, e.g. Qwen3DecoderLayer for Qwen/Qwen3-8B.

    Read from the model's config.json (a local folder, or the Hugging Face cache, without network); None when unknown,
    and accelerate then wraps the model's own `_no_split_modules` (the same class for transformers' decoder models).
    """
    config = None
    if not base_model:  # the embedded SmolLM2-135M-Instruct is a Llama
        return "LlamaDecoderLayer"
    local = Path(base_model).expanduser()
    if (local / "config.json").is_file():
        config = local / "config.json"
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(base_model, "config.json")
            config = Path(hit) if isinstance(hit, str) else None
        except Exception:  # noqa: BLE001 - no hub client or a bad id: accelerate falls back to _no_split_modules
            config = None
    if config is None:
        return "Qwen3DecoderLayer" if "qwen3" in base_model.lower() else None
    try:
        arch = (json.loads(config.read_text()).get("architectures") or [""])[0]
    except (OSError, ValueError):
        return None
    prefix = arch.split("For", 1)[0] if "For" in arch else ""
    return f"{prefix}DecoderLayer" if prefix else None


def accelerate_args(
    n: int,
    *,
    port: int | None = None,
    cpu: bool = False,
    fsdp_layer_cls: str | None = None,
    fsdp: bool = False,
    fsdp_version: int = FSDP_VERSION,
) -> list[str]:
    """`-m accelerate.commands.launch ...` flags for n processes on one machine (bench/gpu_train_ddp.py uses them
    too)."""
    args = [
        "-m",
        ACCELERATE,
        "--num_processes",
        str(n),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no" if cpu else "bf16",
        "--dynamo_backend",
        "no",
    ]
    if port:
        args += ["--main_process_port", str(port)]
    if fsdp:
        head, tail = (FSDP2_FLAGS, FSDP2_TAIL) if fsdp_version == 2 else (FSDP1_FLAGS, FSDP1_TAIL)
        args += head + (["--fsdp_transformer_layer_cls_to_wrap", fsdp_layer_cls] if fsdp_layer_cls else []) + tail
    else:
        # --multi_gpu = torch.distributed.run with one worker per process; without CUDA the workers use gloo on the CPU
        # (accelerate's --cpu would start a single process unless mpirun is configured).
        args.append("--multi_gpu")
    return args


def build_command(
    cfg,
    run_dir: str | Path,
    python: str | None = None,
    resume: bool = False,
    *,
    port: int | None = None,
    cpu_processes: int = 0,
) -> list[str]:
    """The argv that trains `cfg` in `run_dir` (whose run.yaml the runner has written)."""
    run_dir = Path(run_dir)
    module = (
        "training.dpo" if getattr(cfg, "kind", "sft") in ("dpo", "kto") else "training.train"
    )  # preference runs: TRL
    train = ["-m", module, "--config", str(run_dir / CONFIG_FILE), "--run-dir", str(run_dir)]
    if resume:
        train.append("--resume")
    python = python or sys.executable
    n = num_processes(cfg, cpu_processes)
    if n <= 1:
        return [python, *train]
    cpu = bool(cpu_processes and cpu_processes > 1)
    fsdp = getattr(cfg, "distributed", "ddp") == "fsdp" and not cpu  # accelerate's FSDP needs CUDA: CPU tests run DDP
    return [
        python,
        *accelerate_args(
            n, port=port, cpu=cpu, fsdp=fsdp, fsdp_layer_cls=decoder_layer_class(cfg.base_model) if fsdp else None
        ),
        *train,
    ]


def build_env(cfg, base: Mapping[str, str], cpu_processes: int = 0) -> dict[str, str]:
    """Variables to add for the child: CUDA_VISIBLE_DEVICES from cfg.gpus (no list: the first visible GPU alone), and
    the launcher's stop grace.

    ``base`` is the environment the child starts from (the runner's copy of the server's). cfg.gpus are indices among
    the GPUs it sees: when CUDA_VISIBLE_DEVICES is already set (say 2,3), gpus [0, 1] map to devices 2,3, so the child
    sees exactly the GPUs the user picked.
    """
    env: dict[str, str] = {}
    if cpu_processes and cpu_processes > 1:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the gloo test path: no GPU, whatever the host has
    elif cfg.gpus is not None:
        parent = [d.strip() for d in str(base.get("CUDA_VISIBLE_DEVICES", "")).split(",") if d.strip()]
        ids = [parent[g] if parent and g < len(parent) else str(g) for g in cfg.gpus]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
    elif base.get("CUDA_VISIBLE_DEVICES", None) != "":
        # no list = one process on the first visible GPU, and only that one: a single process that sees two GPUs
        # gets nn.DataParallel from the HF Trainer, which TRL's DPO refuses (seen on a 2-GPU H200 host)
        parent = [d.strip() for d in str(base.get("CUDA_VISIBLE_DEVICES") or "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = parent[0] if parent else "0"
    if num_processes(cfg, cpu_processes) > 1:
        env.setdefault(
            "TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(base.get("TORCH_ELASTIC_SHUTDOWN_TIMEOUT") or SHUTDOWN_GRACE_S)
        )
        env["OMP_NUM_THREADS"] = str(
            base.get("OMP_NUM_THREADS") or max(1, (os.cpu_count() or 1) // num_processes(cfg, cpu_processes))
        )
    return env


def cpu_processes_from(env: Mapping[str, str] | None) -> int:
    v = str((env or {}).get(CPU_PROCESSES_ENV, "")).strip()
    return int(v) if v.isdigit() else 0


def check_gpus(cfg, visible: int | None = None) -> None:
    """Refuse, before anything starts, a GPU list this host cannot give. Skipped where no CUDA is present.

    `visible` = how many GPUs this process sees (default: torch.cuda.device_count() when CUDA is available).
    """
    if not cfg.gpus:
        return
    if visible is None:
        try:
            import torch

            visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except ImportError:  # pragma: no cover - torch is a hard requirement
            visible = 0
        if not visible:
            return  # CPU box: the config may be for another machine; the child falls back to the CPU
    bad = [g for g in cfg.gpus if g >= visible]
    if len(cfg.gpus) > visible or bad:
        seen = "GPU 0" if visible == 1 else f"GPUs 0-{visible - 1}"
        raise ValueError(
            f"This run asks for {len(cfg.gpus)} GPU(s) ({','.join(map(str, cfg.gpus))}), but this machine shows "
            f"{visible} ({seen}); pick GPUs from that list."
        )


def launch_spec(
    cfg, run_dir: str | Path, python: str | None = None, resume: bool = False, *, env: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """(argv, variables to add) for the runner. ``env``: the child's whole environment as the runner built it (this
    module reads none). A free rendezvous port is picked for multi-process runs."""
    cpu = cpu_processes_from(env)
    port = free_port() if num_processes(cfg, cpu) > 1 else None
    return build_command(cfg, run_dir, python, resume, port=port, cpu_processes=cpu), build_env(cfg, env, cpu)
