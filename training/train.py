"""LoRA / QLoRA fine-tuning with transformers.Trainer + PEFT, as a CLI the Training tab runs in a subprocess.

    python -m training.train --preset cpu-demo
    python -m training.train --config run.yaml --run-dir data/runs/my-run [--resume] [--set rank=8 --set
    learning_rate=1e-3]
    python -m training.train --preset cpu-demo --rank 8 --max_steps 10     # every TrainConfig field is a flag; --help
    lists them

Precision by hardware: CUDA + load_in_4bit -> QLoRA (NF4 base, bf16 compute, prepare_model_for_kbit_training);
CUDA otherwise -> bf16 base + bf16 autocast; CPU -> `cpu_dtype` base (bf16 by default: about 2x faster than fp32 on the
dev box, and the loss falls as in fp32 because PEFT keeps the LoRA weights and optimizer state in fp32).
Loss is on the reply and <|im_end|> only (training/formatting.py). Progress goes to <run_dir>/trainer_log.jsonl and
status.json (the UI polls them) and to W&B when installed; the adapter, tokenizer, config, dataset hash and final
metrics land in <adapters_dir>/<run_name>/, where the app discovers adapters.
"""

from __future__ import annotations

import argparse
import copy
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.flags import env_flag
from common.jsonio import replace_dir

from .callbacks import FAIL_ENV, FailAtStep, JsonlLogCallback, StatusFile, StopCallback, StopFlag
from .config import TrainConfig, add_config_flags, flag_overrides, parse_set, preset_config, validate, validate_targets
from .data.export import sample_rows
from .data.split import row_group_key, split_pairs
from .fastpath import (
    PackedCollator,
    apply_liger,
    auto_rows,
    fast_plan,
    keep_bf16,
    pack_examples,
    packing_efficiency,
    prepare_for_packing,
)
from .rundir import (
    CONFIG_FILE,
    LOCK_FD_ENV,
    LOCK_FILE,
    LOG_FILE,
    METRICS_FILE,
    append_jsonl,
    read_jsonl,
    write_json_atomic,
)
from .tracking import WandbTracker, wandb_mode

log = logging.getLogger("training.train")
ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "assets" / "sample_pairs.jsonl"
CHECKPOINTS = "checkpoints"
EVAL_SPLITS = ("eval", "validation", "test")


# ---- data ------------------------------------------------------------------------------------------------------
@dataclass
class PairData:
    train: list[dict]
    eval: list[dict]
    info: dict = field(default_factory=dict)  # source, sha256, rows_sha256, counts


def sha256_path(path: Path) -> str:
    """sha256 of a file, or of every file in a folder (relative names + bytes, sorted), so any change shows."""
    h = hashlib.sha256()
    path = Path(path)
    files = (
        [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    )
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _rows_sha256(train: list[dict], evl: list[dict]) -> str:
    h = hashlib.sha256()
    for split, rows in (("train", train), ("eval", evl)):
        for r in rows:
            h.update(json.dumps([split, r["tweet"], r["reply"]], ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def _read_jsonl_rows(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path.name} line {n} is not valid JSON; fix or remove that line.") from exc
    return rows


def _from_split_rows(rows: list[dict], cfg: TrainConfig, source: str) -> tuple[list[dict], list[dict]]:
    if rows and any("split" in r for r in rows):
        train = [r for r in rows if r.get("split") == "train"]
        evl = [r for r in rows if r.get("split") in EVAL_SPLITS]
        if not evl:
            raise ValueError(
                f"The eval split of {source} is empty; export the dataset again with an eval fraction above 0."
            )
        return train, evl
    return split_pairs(rows, cfg.eval_fraction, cfg.seed, key=row_group_key)


def _load_dataset_dict(path: Path) -> dict[str, list[dict]]:
    """A saved DatasetDict; `datasets` is imported only here (the GPU hosts lack it: fall back to its pairs.jsonl)."""
    try:
        from datasets import load_from_disk
    except ImportError:
        if (path / "pairs.jsonl").is_file():
            rows = _read_jsonl_rows(path / "pairs.jsonl")
            return {s: [r for r in rows if r.get("split") == s] for s in {r.get("split") for r in rows}}
        raise ValueError(
            f"Reading the DatasetDict at {path} needs the `datasets` package; install it or pass the export's JSONL."
        ) from None
    dd = load_from_disk(str(path))
    return {name: [dict(r) for r in dd[name]] for name in dd.keys()}


def load_pairs(cfg: TrainConfig) -> PairData:
    """Read (tweet, reply) rows and the train/eval split before any model loads, so data errors are instant.

    Only the export format of training/data/export.py: its DatasetDict folder or its pairs.jsonl (a `split` column);
    the bundled sample comes through `sample_rows` in that format, and rows without a split get the export's split rule.
    """
    if not cfg.dataset:
        src = SAMPLE_DATA
        train, evl = _from_split_rows(sample_rows(src, cfg.eval_fraction, cfg.seed), cfg, str(src))
        kind = "sample"
    else:
        src = Path(cfg.dataset).expanduser()
        if not src.exists():
            raise ValueError(
                f"Dataset {src} does not exist; export one from the Data tab or leave dataset empty for the sample "
                "data."
            )
        if src.is_dir() and (src / "dataset_dict.json").is_file():
            splits = _load_dataset_dict(src)
            if "train" not in splits:
                raise ValueError(f"The dataset at {src} has no train split (it has: {', '.join(splits)}).")
            train = splits["train"]
            name = next((s for s in EVAL_SPLITS if s in splits), None)
            if name is None:
                train, evl = split_pairs(train, cfg.eval_fraction, cfg.seed, key=row_group_key)
            else:
                evl = splits[name]
            kind = "datasetdict"
        elif src.is_dir() and (src / "pairs.jsonl").is_file():
            train, evl = _from_split_rows(_read_jsonl_rows(src / "pairs.jsonl"), cfg, str(src))
            kind = "jsonl"
        elif src.is_file():
            train, evl = _from_split_rows(_read_jsonl_rows(src), cfg, str(src))
            kind = "jsonl"
        else:
            raise ValueError(f"Dataset {src} is neither a JSONL file nor a saved DatasetDict folder.")

    def clean(rs: list[dict]) -> list[dict]:
        return [
            {"tweet": str(r.get("tweet") or "").strip(), "reply": str(r.get("reply") or "").strip()}
            for r in rs
            if str(r.get("tweet") or "").strip() and str(r.get("reply") or "").strip()
        ]

    train, evl = clean(train), clean(evl)
    if not evl:
        raise ValueError(
            f"The eval split of {src} is empty; it is needed to pick the best checkpoint and to stop early."
        )
    if not train:
        raise ValueError(f"The train split of {src} is empty; there is nothing to train on.")
    info = {
        "source": str(src),
        "kind": kind,
        "sha256": sha256_path(src),
        "rows_sha256": _rows_sha256(train, evl),
        "n_train": len(train),
        "n_eval": len(evl),
    }
    return PairData(train, evl, info)


# ---- model -----------------------------------------------------------------------------------------------------
def _dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def load_model(cfg: TrainConfig, device: str, warnings: list[str]):
    """Base model + tokenizer via the app's loader (same name, same tokenizer fixes), or in 4 bit for QLoRA."""
    from generation.config import ModelConfig
    from generation.loader import LoadedModel, load_base

    use_4bit = cfg.load_in_4bit and device.startswith("cuda")
    mc = ModelConfig(
        base_model=cfg.base_model,
        load_in_4bit=False,
        device=device,
        cpu_dtype=cfg.cpu_dtype,
        cache_dir=Path(cfg.cache_dir),
        adapters_dir=Path(cfg.adapters_dir),
    )
    if not use_4bit:
        return load_base(mc), False
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from generation.loader import resolve_source  # path resolution (embedded / local / hub) shared with the app

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(
            "QLoRA (load_in_4bit) needs bitsandbytes on the GPU host; `pip install bitsandbytes` or set "
            "load_in_4bit=false."
        )
    t0 = time.perf_counter()
    path, name, embedded = resolve_source(mc)
    q = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=cfg.bnb_4bit_use_double_quant,
        bnb_4bit_compute_dtype=_dtype(cfg.bnb_4bit_compute_dtype),
    )
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(
        path,
        quantization_config=q,
        dtype=torch.bfloat16,
        attn_implementation="sdpa",
        device_map={"": device if ":" in device else "cuda:0"},
    )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    lm = LoadedModel(
        model,
        tok,
        name,
        device,
        "bfloat16",
        f"{cfg.bnb_4bit_quant_type} 4-bit",
        int(model.get_memory_footprint()),
        time.perf_counter() - t0,
        embedded,
        warnings,
    )
    return lm, True


def _decoder_layers(peft_model):
    """The decoder blocks under a PEFT wrapper (Qwen3 / Llama layout: <causal lm>.model.layers)."""
    inner = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model
    return list(getattr(getattr(inner, "model", inner), "layers", []))


def _layer_count(model) -> int | None:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "num_hidden_layers", None)


def _checkpoint_step(path: Path) -> int:
    try:
        return int(path.name.split("-")[-1])
    except ValueError:
        return -1


def last_checkpoint(run_dir: Path) -> Path | None:
    """Newest complete checkpoint (trainer_state.json is written last, so a crash mid-save is skipped)."""
    d = Path(run_dir) / CHECKPOINTS
    if not d.is_dir():
        return None
    done = [p for p in d.glob("checkpoint-*") if (p / "trainer_state.json").is_file() and _checkpoint_step(p) >= 0]
    return max(done, key=_checkpoint_step) if done else None


def _truncate_log(run_dir: Path, step: int) -> None:
    """On resume, drop log records past the checkpoint (they will be produced again), so curves never fold back."""
    path = run_dir / LOG_FILE
    if not path.exists():
        return
    keep = [r for r in read_jsonl(path) if int(r.get("step") or 0) <= step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
    os.replace(tmp, path)


def _generation_config(model, tokenizer, eot_token: str):
    from generation.chat import end_of_turn_ids

    gc = copy.deepcopy(model.generation_config)
    eot = tokenizer.convert_tokens_to_ids(eot_token)
    ids = [eot] + [i for i in end_of_turn_ids(tokenizer) if i != eot]
    gc.eos_token_id = ids if len(ids) > 1 else ids[0]
    gc.pad_token_id = tokenizer.pad_token_id
    return gc


def save_adapter(
    peft_model,
    tokenizer,
    cfg: TrainConfig,
    run_id: str,
    data_info: dict,
    metrics: dict,
    eot_token: str,
    base_name: str,
    state_dict: dict | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write into a hidden temp folder, then rename: the app never discovers half an adapter.

    `state_dict`: the full (gathered) weights when the model is sharded (FSDP); None = read them from `peft_model`.
    `extra_files`: name -> text written into the folder before it appears (e.g. lineage.json of a DPO adapter).

    base_model_name_or_path is set to the name the app loads the base as (LoadedModel.name; generation/adapters.py
    matches on it). It is set only here: during training it stays the local path, so PEFT's checkpoint saves do not
    look the name up on the Hub.
    """
    dest_root = Path(cfg.adapters_dir)
    dest_root.mkdir(parents=True, exist_ok=True)
    dest = dest_root / run_id
    tmp = dest_root / f".{run_id}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    peft_model.peft_config["default"].base_model_name_or_path = base_name
    peft_model.save_pretrained(
        str(tmp), save_embedding_layers=False, state_dict=state_dict
    )  # embeddings are frozen: no Hub lookup
    tokenizer.save_pretrained(str(tmp))
    _generation_config(peft_model.get_base_model(), tokenizer, eot_token).save_pretrained(str(tmp))
    cfg.to_yaml(tmp / "training_config.yaml")
    (tmp / "dataset.json").write_text(json.dumps(data_info, indent=1))
    (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=1, default=str))
    for fname, text in (extra_files or {}).items():
        (tmp / fname).write_text(text)
    replace_dir(tmp, dest)
    return dest


# ---- training --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Launch:
    """How this trainer process was started, read once from its own environment by ``main`` (``from_env``) and passed
    down: the trainer runs as its own process (the runner or accelerate starts it), never inside the app.

    The defaults are a plain single-process run, which is what a test calling ``train()`` directly gets.
    """

    rank: int = 0  # RANK (accelerate launch / torch.distributed.run)
    world_size: int = 1  # WORLD_SIZE: processes in this run
    local_rank: int | None = None  # LOCAL_RANK; None = not started by a distributed launcher
    fsdp: bool = False  # ACCELERATE_USE_FSDP, set for every worker by `accelerate launch --use_fsdp`
    lock_fd: str = ""  # REPLY_ARENA_LOCK_FD as given: the runner's lock descriptor (see _inherited_lock_fd)
    fail_at_step: int | None = None  # REPLY_ARENA_FAIL_AT_STEP: tests crash a run at this optimizer step
    wandb_mode: str = "offline"  # common.tracking.wandb_mode: WANDB_MODE / WANDB_API_KEY

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Launch":
        local = env.get("LOCAL_RANK")
        fail = env.get(FAIL_ENV, "").strip()
        return cls(
            rank=int(env.get("RANK", "0")),
            world_size=int(env.get("WORLD_SIZE", "1") or 1),
            local_rank=int(local) if local is not None else None,
            fsdp=local is not None and env_flag(env.get("ACCELERATE_USE_FSDP")),
            lock_fd=env.get(LOCK_FD_ENV, ""),
            fail_at_step=int(fail) if fail.isdigit() else None,
            wandb_mode=wandb_mode(env),
        )


def _inherited_lock_fd(run_dir: str | None, lock_fd: str) -> int | None:
    """The runner's lock descriptor, if this process really holds it.

    A plain child inherits it (pass_fds). accelerate's workers do not (torch.distributed.run closes descriptors; the
    launcher keeps the lock until every worker has exited), yet they see REPLY_ARENA_LOCK_FD: that number is then some
    other file of theirs, which must not be closed as if it were the lock.
    """
    v = lock_fd
    if not v.isdigit() or not run_dir:
        return None
    try:
        held, lock = os.fstat(int(v)), os.stat(Path(run_dir).parent / LOCK_FILE)
    except OSError:
        return None
    return int(v) if (held.st_dev, held.st_ino) == (lock.st_dev, lock.st_ino) else None


def _follow_launcher(launch: Launch) -> None:
    """Under accelerate launch, get SIGTERM if the launcher dies (e.g. SIGKILLed): the worker then checkpoints and exits
    instead of holding its GPU as an orphan. Linux only; a no-op for a plain single-process run."""
    if launch.local_rank is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        parent = os.getppid()
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _peak_gpu_gib(device: str, world: int) -> list[float]:
    """Each rank's peak GPU memory (GiB PyTorch allocated), so a run shows what FSDP sharding saved; [] on the CPU.

    With several processes this is a collective (all_gather_object): every rank must call it at the same point.
    """
    import torch

    if not device.startswith("cuda"):
        return []
    mine = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        every: list = [None] * world
        torch.distributed.all_gather_object(every, mine)
        return [float(x) for x in every]
    return [mine]


def _split_for_ranks(grad_accum: int, rows: int | None, world: int) -> tuple[int, int | None]:
    """Keep the recipe's examples per optimizer step when N processes each take a share of the step.

    Padded path: gradient accumulation is divided among the ranks (micro_batch is the memory knob and stays).
    Packed path: the rows of a step are divided. Rounded up, so a step never shrinks below the recipe.
    """
    if world <= 1:
        return grad_accum, rows
    return max(1, -(-grad_accum // world)), (max(1, -(-rows // world)) if rows else rows)


def _take_lock(run_dir: Path, launch: Launch) -> int | None:
    """Outside the runner (plain CLI), take the same one-run-at-a-time lock the runner uses."""
    if launch.lock_fd or not launch.is_main:
        return None
    path = Path(run_dir).parent / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another run"
        os.close(fd)
        raise ValueError(f"Training run {holder} is already running in {path.parent}; stop it first.") from None
    os.ftruncate(fd, 0)
    os.write(fd, Path(run_dir).name.encode())
    return fd


def train(
    cfg: TrainConfig, run_dir: Path, resume: bool = False, stop: StopFlag | None = None, launch: Launch | None = None
) -> dict:
    """Run one training job end to end; returns the final status dict. Raises on failure (main() records it).
    ``launch``: how this process was started (main() reads it from the environment); default a single process."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

    from .formatting import PadCollator, end_of_turn_token, format_examples

    if cfg.kind != "sft":
        raise ValueError(
            f"A {cfg.kind} run is trained by `python -m training.dpo` (the runner picks it from the config's kind)."
        )
    t_start = time.time()
    stop = stop or StopFlag()
    run_dir = Path(run_dir)
    run_id = cfg.run_name or run_dir.name
    launch = launch or Launch()
    is_main, world, fsdp, rank = launch.is_main, launch.world_size, launch.fsdp, launch.rank
    status = StatusFile(run_dir, enabled=is_main)
    warnings = validate(cfg)
    ckpt = _begin_run(status, run_dir, run_id, t_start, warnings, resume, is_main)

    data = load_pairs(cfg)  # before the model: a data problem costs a second, not a model load
    device = f"cuda:{launch.local_rank or 0}" if torch.cuda.is_available() else "cpu"
    status.update(
        phase="loading model",
        device=device,
        world_size=world,
        distributed=("fsdp" if fsdp else "ddp") if world > 1 else None,
    )
    torch.manual_seed(
        cfg.seed
    )  # same seed on every rank: identical LoRA init (DDP/FSDP also broadcast rank 0's weights)
    if fsdp:  # FSDP shards from host memory: load the bf16 base on the CPU, the wrap moves each rank's shard to its GPU
        loaded, use_4bit = load_model(TrainConfig.from_dict({"cpu_dtype": "bfloat16"}, base=cfg), "cpu", warnings)
        loaded.model.set_attn_implementation(
            "sdpa"
        )  # the loader picks eager for CPU inference; these layers train on GPUs
    else:
        loaded, use_4bit = load_model(cfg, device, warnings)
    model, tok = loaded.model, loaded.tokenizer
    tok.padding_side = "right"
    validate_targets(model, cfg.target_modules)
    n_layers = _layer_count(model)
    if cfg.layers_to_transform and n_layers is not None and max(cfg.layers_to_transform) >= n_layers:
        raise ValueError(
            f"layers_to_transform names layer {max(cfg.layers_to_transform)}, but {loaded.name} has {n_layers} layers "
            f"(0-{n_layers - 1})."
        )
    if stop.is_set() and world == 1:  # several ranks decide together below, once the process group exists
        return _finish_stopped(status, "Stopped while loading; nothing was trained.")

    eot = end_of_turn_token(tok)
    model.generation_config.eos_token_id = _generation_config(model, tok, eot).eos_token_id
    model.config.use_cache = False
    on_cuda = device.startswith("cuda")
    fast = fast_plan(cfg, on_cuda)
    if fsdp:  # seen on an H100 (FSDP2, untied lm_head): Liger's fused linear cross-entropy mixes the unsharded head
        fast.compile = (
            False  # weight with DTensors ("aten.mm.out got mixed torch.Tensor and DTensor"); compile: untested
        )
        fast.liger = False
    if use_4bit:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
        if fast.enabled:
            keep_bf16(model)
    if fast.liger:
        fast.liger = apply_liger(model)
    lora = LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        layers_to_transform=list(cfg.layers_to_transform) if cfg.layers_to_transform else None,
        bias="none",
        task_type="CAUSAL_LM",
    )
    pm = get_peft_model(model, lora)

    status.update(phase="formatting")
    train_ex, train_stats = format_examples(tok, data.train, cfg.max_seq_len)
    eval_ex, eval_stats = format_examples(tok, data.eval, cfg.max_seq_len)
    if not train_ex or not eval_ex:
        raise ValueError(
            f"No {'train' if not train_ex else 'eval'} example fits in max_seq_len={cfg.max_seq_len} tokens; raise "
            "max_seq_len."
        )
    fmt = {"train": train_stats.to_dict(), "eval": eval_stats.to_dict()}
    micro_batch, grad_accum, collator = cfg.micro_batch_size, cfg.grad_accum, PadCollator(tok.pad_token_id)
    grad_accum, _ = _split_for_ranks(grad_accum, None, world)
    if fast.enabled:
        prepare_for_packing(model)
        rows = fast.rows or auto_rows(train_ex, cfg, fast.pack_tokens)
        _, rows = _split_for_ranks(1, rows, world)
        train_ex = pack_examples(train_ex, fast.pack_tokens, tok.pad_token_id)
        eval_ex = pack_examples(eval_ex, fast.pack_tokens, tok.pad_token_id)
        micro_batch, grad_accum, collator = rows, 1, PackedCollator()
        fmt["packing"] = {
            "pack_tokens": fast.pack_tokens,
            "rows_per_step": rows * world,
            "rows_per_rank": rows,
            "train_rows": len(train_ex),
            "efficiency": round(packing_efficiency(train_ex), 3),
            "liger": fast.liger,
            "compile_layers": fast.compile,
        }
        log.info(
            "Fast path: %d packed rows of %d tokens (%.0f%% real tokens), %d rows per step, Liger %s.",
            len(train_ex),
            fast.pack_tokens,
            100 * packing_efficiency(train_ex),
            rows,
            fast.liger,
        )
        if fast.compile and not use_4bit:
            for layer in _decoder_layers(pm):
                layer.compile(dynamic=False)
    log.info(
        "Formatted %d train / %d eval examples (%d + %d dropped as too long).",
        len(train_ex),
        len(eval_ex),
        train_stats.dropped_too_long,
        eval_stats.dropped_too_long,
    )
    if world > 1:
        fmt["distributed"] = {
            "world_size": world,
            "mode": "fsdp" if fsdp else "ddp",
            "per_rank_batch": micro_batch,
            "grad_accum": grad_accum,
            "examples_or_rows_per_step": micro_batch * grad_accum * world,
        }
        log.info(
            "Rank %d of %d (%s): %d x %d per rank per optimizer step.",
            rank,
            world,
            "FSDP" if fsdp else "DDP",
            micro_batch,
            grad_accum,
        )

    report_to = (
        "none"  # W&B goes through training.tracking: config, dataset hash, tokens/s, GPU memory, where the run lives
    )
    tracker = WandbTracker(
        run_dir, cfg.wandb_project, run_id, cfg.to_dict(), data.info, enabled=is_main, mode=launch.wandb_mode
    )
    wandb_dir = tracker.start().local_dir
    args = TrainingArguments(
        output_dir=str(run_dir / CHECKPOINTS),
        run_name=run_id,
        report_to=report_to,
        seed=cfg.seed,
        data_seed=cfg.seed,
        per_device_train_batch_size=micro_batch,
        per_device_eval_batch_size=micro_batch,
        gradient_accumulation_steps=grad_accum,
        optim="adamw_torch_fused" if fast.fused_adamw else "adamw_torch",
        learning_rate=cfg.learning_rate,
        num_train_epochs=float(cfg.epochs),
        max_steps=cfg.max_steps,
        warmup_steps=float(cfg.warmup_ratio),
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        eval_strategy="steps",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=cfg.load_best_model_at_end,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        eval_on_start=not ckpt,
        bf16=on_cuda,
        use_cpu=not on_cuda,
        gradient_checkpointing=cfg.gradient_checkpointing and on_cuda and not use_4bit,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_num_workers=0,
        disable_tqdm=True,
        ddp_find_unused_parameters=False if world > 1 else None,
    )
    if world > 1 and stop.is_set_anywhere(args.device):  # TrainingArguments set up the process group: decide together
        return _finish_stopped(status, "Stopped while loading; nothing was trained.", rank_result=True, rank=rank)
    log_cb = JsonlLogCallback(run_dir, status, enabled=is_main)
    stop_cb = StopCallback(stop)
    callbacks: list = [log_cb, stop_cb, tracker]
    if cfg.early_stopping_patience > 0:
        callbacks.append(EarlyStoppingCallback(cfg.early_stopping_patience, cfg.early_stopping_threshold))
    if launch.fail_at_step is not None:
        log.warning("%s=%d: this run will fail on purpose.", FAIL_ENV, launch.fail_at_step)
        callbacks.append(FailAtStep(launch.fail_at_step))
    trainer = Trainer(
        model=pm,
        args=args,
        data_collator=collator,
        train_dataset=train_ex,
        eval_dataset=eval_ex,
        processing_class=tok,
        callbacks=callbacks,
    )
    status.update(phase="training", wandb_dir=wandb_dir, n_train=len(train_ex), n_eval=len(eval_ex), formatting=fmt)
    out = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    state = trainer.state
    peaks = _peak_gpu_gib(device, world)  # collective on several GPUs: every rank calls it here
    if peaks:
        log.info(
            "Rank %d of %d: peak GPU memory %.2f GiB allocated.",
            rank,
            world,
            peaks[rank] if len(peaks) > rank else peaks[0],
        )
    if world > 1:  # every rank says where it ended and whether its own SIGTERM handler fired (tests/test_multigpu.py)
        log.info(
            "Rank %d of %d finished training at step %d (stop requested: %s; own stop signal: %s).",
            rank,
            world,
            state.global_step,
            stop_cb.stopped_at is not None,
            stop.is_set(),
        )

    if (
        stop_cb.stopped_at is not None and state.global_step < state.max_steps
    ):  # a stop after the last step just finishes
        ck = last_checkpoint(run_dir)
        tracker.finish({"global_step": state.global_step}, state="stopped")
        return _finish_stopped(
            status, None, step=state.global_step, checkpoint=str(ck) if ck else None, rank_result=True, rank=rank
        )

    # The saved adapter's eval loss: the best checkpoint's (already measured, now loaded) or a fresh evaluation.
    last_eval = next((h for h in reversed(state.log_history) if "eval_loss" in h), None)
    if cfg.load_best_model_at_end and state.best_model_checkpoint and state.best_metric is not None:
        ev = {"eval_loss": state.best_metric}
    elif last_eval is not None and last_eval.get("step") == state.global_step:
        ev = {"eval_loss": last_eval["eval_loss"]}
    else:
        status.update(phase="final evaluation")
        ev = {}
    log_cb.final = True
    if ev and is_main:
        log_cb.on_log(args, state, trainer.control, logs={"eval_loss": ev["eval_loss"]})
    elif not ev:
        ev = trainer.evaluate()
    events = read_jsonl(run_dir / LOG_FILE) if is_main else []
    train_losses = [e["loss"] for e in events if e.get("event") == "train" and e.get("loss") is not None]
    base_eval = [
        e["eval_loss"]
        for e in events
        if e.get("event") == "eval" and e.get("step") == 0 and e.get("eval_loss") is not None
    ]
    tps = [e["tokens_per_s"] for e in events if e.get("tokens_per_s")]
    metrics: dict[str, Any] = {
        "run_id": run_id,
        "base_model": loaded.name,
        "device": device,
        "dtype": loaded.dtype,
        "quantized": loaded.quantized,
        "train_loss": out.training_loss,
        "final_train_loss": train_losses[-1] if train_losses else None,
        "first_train_loss": train_losses[0] if train_losses else None,
        "eval_loss": ev.get("eval_loss"),
        "best_eval_loss": state.best_metric,
        "base_eval_loss": base_eval[0] if base_eval else None,
        "best_checkpoint": state.best_model_checkpoint,
        "global_step": state.global_step,
        "max_steps": state.max_steps,
        "epochs_done": state.epoch,
        "early_stopped": state.global_step < state.max_steps,
        "train_runtime_s": out.metrics.get("train_runtime"),
        "tokens_per_s": tps[-1] if tps else None,
        "n_train": len(train_ex),
        "n_eval": len(eval_ex),
        "formatting": fmt,
        "dataset_sha256": data.info["sha256"],
        "wall_s": round(time.time() - t_start, 1),
        "peak_gpu_gib": max(peaks) if peaks else None,
        "peak_gpu_gib_per_rank": peaks,
    }
    adapter_path = None
    full_state = None
    if fsdp:  # collective: every rank hands its shards over; rank 0 receives the full weights (on the CPU)
        status.update(phase="saving adapter")
        full_state = trainer.accelerator.get_state_dict(trainer.model)
    if is_main:
        status.update(phase="saving adapter")
        adapter_path = str(
            save_adapter(pm, tok, cfg, run_id, data.info, metrics, eot, loaded.name, state_dict=full_state)
        )
        tracker.log({"eval/loss": ev.get("eval_loss")}, step=state.global_step)
    return _finish_completed(  # ranks > 0 write nothing and return what they know
        status,
        tracker,
        run_dir,
        state,
        metrics,
        ev.get("eval_loss"),
        adapter_path,
        log_cb.t0,
        is_main=is_main,
        rank_result=True,
        rank=rank,
    )


def _begin_run(
    status: StatusFile,
    run_dir: Path,
    run_id: str,
    t_start: float,
    warnings: list[str],
    resume: bool,
    is_main: bool,
    **extra: Any,
) -> Path | None:
    """The start of a run (SFT and preference runs alike): warnings logged, status 'running', and on resume the log cut
    back to the last checkpoint (else a stale log removed). Returns the checkpoint to resume from, if any."""
    for w in warnings:
        log.warning(w)
    status.update(
        run_id=run_id,
        state="running",
        phase="loading data",
        pid=os.getpid(),
        run_dir=str(run_dir),
        error=None,
        started_at=t_start,
        warnings=warnings,
        adapter_path=None,
        **extra,
    )
    ckpt = last_checkpoint(run_dir) if resume else None
    if resume and ckpt is None:
        log.warning("--resume: no checkpoint in %s yet; starting from the beginning.", run_dir / CHECKPOINTS)
    if ckpt is not None and is_main:
        _truncate_log(run_dir, _checkpoint_step(ckpt))
        status.update(resumed_from=str(ckpt))
    elif is_main and (run_dir / LOG_FILE).exists():
        (run_dir / LOG_FILE).unlink()
    return ckpt


def _finish_completed(
    status: StatusFile,
    tracker: WandbTracker,
    run_dir: Path,
    state,
    metrics: dict,
    eval_loss: float | None,
    adapter_path: str | None,
    t0: float,
    is_main: bool = True,
    rank_result: bool = False,
    rank: int = 0,
) -> dict:
    """The end of a run that trained to its last step (SFT and preference runs alike), once the adapter is saved.

    The main process writes metrics.json, closes the tracker and logs the `end` event; every process then records
    the done state. `state` is the trainer's TrainerState; `t0` is when the log callback started its clock.
    """
    if is_main:
        write_json_atomic(run_dir / METRICS_FILE, metrics)
        tracker.finish(metrics)
        append_jsonl(
            run_dir / LOG_FILE,
            {
                "event": "end",
                "step": state.global_step,
                "max_steps": state.max_steps,
                "status": "completed",
                "eval_loss": eval_loss,
                "time": time.time(),
                "eta_s": 0.0,
                "elapsed": round(time.time() - t0, 2),
            },
        )
    done = dict(
        state="completed",
        phase="done",
        adapter_path=adapter_path,
        metrics=metrics,
        step=state.global_step,
        max_steps=state.max_steps,
        eta_s=0.0,
        finished_at=time.time(),
    )
    return status.update(**done) or ({**done, "rank": rank} if rank_result else done)


def _finish_stopped(
    status: StatusFile,
    note: str | None,
    step: int | None = None,
    checkpoint: str | None = None,
    rank_result: bool = False,
    rank: int = 0,
) -> dict:
    values: dict[str, Any] = {
        "state": "stopped",
        "phase": "stopped",
        "finished_at": time.time(),
        "checkpoint": checkpoint,
        "eta_s": None,
        "error": note,
    }
    if step is not None:
        values["step"] = step
    return status.update(**values) or ({**values, "rank": rank} if rank_result else {})


# ---- CLI -------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.train",
        description="Fine-tune a LoRA/QLoRA adapter for tweet replies.",
        allow_abbrev=False,
        usage="python -m training.train [--config YAML | --preset NAME] [--run-dir DIR] "
        "[--resume] [--set KEY=VALUE ...] [--KEY VALUE ...]",
    )
    p.add_argument("--config", help="YAML config file (keys = training/config.py TrainConfig fields)")
    p.add_argument("--preset", help="start from a preset: qwen3-8b-qlora or cpu-demo")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one config key (repeatable)"
    )
    p.add_argument("--run-dir", help="run folder (default <output_dir>/<run_name>)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    add_config_flags(p)
    return p


def build_config(ns: argparse.Namespace) -> TrainConfig:
    if ns.config and ns.preset:
        raise ValueError(
            "Pass either --config or --preset, not both (put `preset: NAME` inside the YAML to combine them)."
        )
    if ns.config:
        base = TrainConfig.from_yaml(ns.config)
    elif ns.resume and ns.run_dir and (Path(ns.run_dir) / CONFIG_FILE).is_file():
        base = TrainConfig.from_yaml(Path(ns.run_dir) / CONFIG_FILE)
    else:
        base = preset_config(ns.preset)
    cfg = TrainConfig.from_dict({**parse_set(ns.set), **flag_overrides(ns)}, base=base)
    if not cfg.run_name:
        name = Path(ns.run_dir).name if ns.run_dir else f"{ns.preset or 'run'}-{time.strftime('%Y%m%d-%H%M%S')}"
        cfg = TrainConfig.from_dict({"run_name": name}, base=cfg)
    return cfg


def _leave_process_group(launch: Launch) -> None:
    """Several processes: wait for every rank (rank 0 may still be saving the adapter), then close the process group.

    A rank that exits with the group still open can abort in the backend's teardown (gloo: "terminate called
    without an active exception", SIGABRT; 4 of 108 two-process gloo launches on a 2-core box), and the launcher
    then reports the whole run as failed although it completed. Only on the way out of a run that returned: a rank
    that raised exits at once and the launcher stops the others.
    """
    if launch.world_size <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        log.info("Rank %d of %d closed its process group.", launch.rank, launch.world_size)


def main(argv: list[str] | None = None, train_fn=None) -> int:
    """The CLI; `train_fn` (default: SFT `train`) lets training/dpo.py reuse the same run-folder, lock and status
    handling."""
    stop = StopFlag().install()  # first thing: a stop during imports or loading is honoured, not a traceback
    launch = Launch.from_env(os.environ)  # this process's launch facts; the only place the trainer reads its env
    os.environ.setdefault("WANDB_SILENT", "true")  # wandb's own banner off; tracking.json says where the run lives
    _follow_launcher(launch)
    fmt = (
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
        if launch.world_size == 1
        else f"%(asctime)s %(levelname)s [rank {launch.rank}] %(name)s: %(message)s"
    )
    logging.basicConfig(level=logging.INFO, format=fmt, stream=sys.stderr)
    ns = _parser().parse_args(argv)
    run_dir: Path | None = None
    status: StatusFile | None = None
    lock_fd: int | None = _inherited_lock_fd(ns.run_dir, launch.lock_fd)
    if ns.run_dir and Path(ns.run_dir).is_dir():  # the runner made it: record even a config error there
        status = StatusFile(Path(ns.run_dir), enabled=launch.is_main)
        status.update(pid=os.getpid())
    try:
        cfg = build_config(ns)
        validate(cfg)
        run_dir = Path(ns.run_dir) if ns.run_dir else Path(cfg.output_dir) / cfg.run_name
        run_dir.mkdir(parents=True, exist_ok=True)
        status = StatusFile(run_dir, enabled=launch.is_main)
        lock_fd = _take_lock(run_dir, launch) if lock_fd is None else lock_fd  # held until the final status is written
        if launch.is_main and not (ns.config and Path(ns.config).resolve() == (run_dir / CONFIG_FILE).resolve()):
            if not (ns.resume and (run_dir / CONFIG_FILE).exists()):
                cfg.to_yaml(run_dir / CONFIG_FILE)
        final = (train_fn or train)(cfg, run_dir, resume=ns.resume, stop=stop, launch=launch)
        print(
            json.dumps(
                {
                    "state": final.get("state"),
                    "adapter_path": final.get("adapter_path"),
                    "run_dir": str(run_dir),
                    "eval_loss": (final.get("metrics") or {}).get("eval_loss"),
                    **({"rank": launch.rank, "step": final.get("step")} if launch.world_size > 1 else {}),
                }
            ),
            flush=True,
        )
        _leave_process_group(launch)
        return 0
    except Exception as exc:  # noqa: BLE001 - every failure must land in status.json for the UI
        msg = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else type(exc).__name__
        err = msg if isinstance(exc, ValueError) else f"{type(exc).__name__}: {msg}"
        traceback.print_exc()
        print(f"ERROR: {err}", file=sys.stderr, flush=True)
        if status is not None:
            status.update(state="failed", phase="failed", error=err, finished_at=time.time())
        return 2 if isinstance(exc, ValueError) else 1
    finally:
        if lock_fd is not None:  # the final state is on disk: let the next run start while this process exits
            try:
                os.close(lock_fd)
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
