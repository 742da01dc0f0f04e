"""Training configuration: the seed's LoRA/QLoRA recipe as defaults, presets, YAML I/O, and validation.

Everything here is checked before a model or dataset is loaded, so a bad value costs a second, not a GPU start-up.
This module imports only the standard library and PyYAML (torch lazily, for the CUDA check), so the UI can use it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import warnings as _warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from common.tracking import DEFAULT_PROJECT

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
EMBEDDED_BASE = ""  # empty base_model = the embedded SmolLM2-135M-Instruct (generation/embedded.py)
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
_DTYPES = ("bfloat16", "float32", "float16")
KINDS = ("sft", "dpo", "kto")
PROVENANCE_FILE = "provenance.json"  # written next to a preference dataset by arena/preferences.py


@dataclass
class TrainConfig:
    """One training run. Field names are the YAML keys, the `--set key=value` keys and the `--<key>` flags of
    `python -m training.train`; each field's help (metadata, as in TRL's SFTConfig) says where its default comes from
    ("Seed:" = the recipe in the design card). The CLI help and the Training tab's field info read it from here.

    Groups: model, LoRA, optimisation, evaluation and checkpoints, data, outputs, speed.
    """

    # ---- model ---------------------------------------------------------------------------------------------------
    base_model: str = field(
        default=EMBEDDED_BASE,
        metadata={
            "help": (
                "Base model: a hub id or a local folder; empty = the embedded SmolLM2-135M-Instruct (offline "
                "default). Production and the seed: Qwen/Qwen3-8B."
            ),
        },
    )
    load_in_4bit: bool = field(
        default=True,
        metadata={
            "help": (
                "QLoRA: load the base weights in 4 bit (CUDA + bitsandbytes only; on a CPU the run falls back to "
                "cpu_dtype with a warning). Seed: on."
            ),
        },
    )
    bnb_4bit_quant_type: str = field(
        default="nf4",
        metadata={"help": "4-bit number format, nf4 or fp4. Seed and the QLoRA paper: nf4 (NormalFloat4)."},
    )
    bnb_4bit_use_double_quant: bool = field(
        default=True,
        metadata={
            "help": (
                "Quantize the quantization constants too (saves ~0.4 bit per weight). Seed and the QLoRA paper: on."
            ),
        },
    )
    bnb_4bit_compute_dtype: str = field(
        default="bfloat16",
        metadata={"help": "Dtype of the matmuls on top of the 4-bit weights. Seed: bfloat16."},
    )
    cpu_dtype: str = field(
        default="bfloat16",
        metadata={
            "help": (
                "Base weight dtype on a CPU: bfloat16, float32 or float16. Measured on the 2-core dev box: bf16 ~2x"
                " faster than fp32 and the loss still falls (the LoRA weights stay fp32)."
            ),
        },
    )
    gradient_checkpointing: bool = field(
        default=True,
        metadata={
            "help": (
                "Recompute activations in the backward pass: ~30% slower, much less memory on the 8B model (CUDA "
                "only). Seed: on."
            ),
        },
    )
    # ---- LoRA ----------------------------------------------------------------------------------------------------
    rank: int = field(
        default=16,
        metadata={"help": "LoRA rank r: the adapter's size. Seed: 16."},
    )
    alpha: int = field(
        default=16,
        metadata={"help": "LoRA alpha; the update is scaled by alpha/rank. Seed: 16 (scale 1)."},
    )
    dropout: float = field(
        default=0.1,
        metadata={"help": "LoRA dropout on the adapter input, in [0, 1). Seed: 0.1."},
    )
    target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_TARGETS),
        metadata={
            "help": (
                "Linear layers that get adapters. Seed: every attention and MLP projection (q, k, v, o, gate, up, "
                "down)."
            ),
        },
    )
    layers_to_transform: list[int] | None = field(
        default=None,
        metadata={
            "help": (
                "Decoder layer indices that get adapters; None = every layer (seed). The cpu-demo preset adapts "
                "only the top 10 layers."
            ),
        },
    )
    # ---- optimisation --------------------------------------------------------------------------------------------
    learning_rate: float = field(
        default=2e-4,
        metadata={"help": "Peak learning rate (AdamW, linear decay). Seed: 2e-4, the usual LoRA rate."},
    )
    epochs: float = field(
        default=2,
        metadata={"help": "Passes over the train split (ignored when max_steps > 0). Seed: 2."},
    )
    micro_batch_size: int = field(
        default=4,
        metadata={"help": "Examples per device per forward pass. Seed: 4."},
    )
    grad_accum: int = field(
        default=4,
        metadata={
            "help": (
                "Micro-batches per optimizer step (effective batch = micro_batch_size x grad_accum x GPUs). Seed: "
                "4, effective batch 16."
            ),
        },
    )
    warmup_ratio: float = field(
        default=0.03,
        metadata={"help": "Share of the steps with a linear learning-rate warm-up, in [0, 1). Seed: 0.03."},
    )
    weight_decay: float = field(
        default=0.01,
        metadata={"help": "AdamW weight decay. Seed: 0.01."},
    )
    max_grad_norm: float = field(
        default=1.0,
        metadata={"help": "Gradient clipping norm. Seed: 1.0."},
    )
    max_steps: int = field(
        default=-1,
        metadata={
            "help": ("Optimizer steps to run; -1 = run the epochs (transformers' convention), > 0 caps the steps."),
        },
    )
    max_seq_len: int = field(
        default=512,
        metadata={
            "help": ("Tokens per example; longer ones are cut. Seed: 512 (a tweet prompt + reply is 48-192 tokens)."),
        },
    )
    seed: int = field(
        default=42,
        metadata={"help": "Random seed for the split, the adapter's initialisation and the data order. Seed: 42."},
    )
    # ---- evaluation and checkpoints ------------------------------------------------------------------------------
    eval_steps: int = field(
        default=50,
        metadata={"help": "Evaluate on the eval split every N optimizer steps. Seed: 50."},
    )
    save_steps: int = field(
        default=50,
        metadata={
            "help": ("Save a checkpoint every N steps (a multiple of eval_steps when the best one is kept). Seed: 50."),
        },
    )
    logging_steps: int = field(
        default=10,
        metadata={"help": "Log the train loss every N steps (the curve in the Training tab). Default 10."},
    )
    save_total_limit: int = field(
        default=3,
        metadata={"help": "Checkpoints kept on disk. Seed: 3."},
    )
    load_best_model_at_end: bool = field(
        default=True,
        metadata={"help": "Publish the checkpoint with the lowest eval loss, not the last one. Seed: on."},
    )
    early_stopping_patience: int = field(
        default=3,
        metadata={"help": "Stop after N evaluations without improvement; 0 = never stop early. Seed: 3."},
    )
    early_stopping_threshold: float = field(
        default=0.01,
        metadata={"help": "An eval-loss improvement smaller than this does not count. Seed: 0.01."},
    )
    # ---- data ----------------------------------------------------------------------------------------------------
    dataset: str = field(
        default="",
        metadata={
            "help": (
                "An export from the Data tab (its DatasetDict folder or pairs.jsonl) or a JSONL file; empty = "
                "assets/sample_pairs.jsonl through the funnel's rules."
            ),
        },
    )
    eval_fraction: float = field(
        default=0.1,
        metadata={
            "help": (
                "Share held out for the eval loss when the dataset has no eval split (grouped by conversation). "
                "Default 0.1."
            ),
        },
    )
    # ---- outputs -------------------------------------------------------------------------------------------------
    output_dir: str = field(
        default="data/runs",
        metadata={"help": "Run folders (logs, checkpoints) are created under it."},
    )
    adapters_dir: str = field(
        default="adapters",
        metadata={"help": "Final adapters land in <adapters_dir>/<run_name>/, where the app finds them."},
    )
    run_name: str = field(
        default="",
        metadata={
            "help": (
                "Run and adapter name (letters, digits, '.', '_', '-'); empty = generated as <preset>-<timestamp>."
            ),
        },
    )
    gpus: list[int] | None = field(
        default=None,
        metadata={
            "help": (
                "CUDA device indices, e.g. 0,1; empty = one process on the first visible GPU; 2 or more = one "
                "process per GPU (accelerate launch)."
            ),
        },
    )
    distributed: str = field(
        default="ddp",
        metadata={
            "help": (
                "With 2+ GPUs: ddp = a full model copy per GPU, gradients all-reduced (QLoRA works); fsdp = shard "
                "the bf16 base over the GPUs when one GPU's memory is short (not with load_in_4bit)."
            ),
        },
    )
    wandb_project: str = field(
        default=DEFAULT_PROJECT,
        metadata={"help": "W&B project (offline unless WANDB_API_KEY is set; skipped if wandb is not installed)."},
    )
    cache_dir: str = field(
        default=".cache",
        metadata={"help": "Where the embedded model's converted weights live."},
    )
    # ---- speed (training/fastpath.py; measured in bench/gpu_train.py) --------------------------------------------
    fast_path: str = field(
        default="auto",
        metadata={
            "help": (
                "auto = on CUDA only; on / off. Packing + Liger kernels + fused AdamW (+ compiled layers for bf16)."
            ),
        },
    )
    pack_tokens: int = field(
        default=1024,
        metadata={
            "help": (
                "Tokens per packed row. Measured on an H100: 1024-token rows beat 4096 (less masked attention work)."
            ),
        },
    )
    pack_rows: int = field(
        default=0,
        metadata={
            "help": (
                "Packed rows per micro-batch; 0 = auto: the seed's examples per optimizer step (micro_batch_size x "
                "grad_accum)."
            ),
        },
    )
    compile_layers: bool = field(
        default=True,
        metadata={
            "help": ("torch.compile each decoder layer on the bf16 CUDA fast path (~1 min compile, +10-25% speed)."),
        },
    )
    # ---- preference training (training/dpo.py; kind dpo/kto) -----------------------------------------------------
    kind: str = field(
        default="sft",
        metadata={
            "help": (
                "sft = supervised (tweet, reply) pairs; dpo = TRL DPO on vote pairs; kto = TRL KTO (unpaired, "
                "both-bad votes too)."
            ),
        },
    )
    parent_adapter: str = field(
        default="",
        metadata={
            "help": (
                "dpo/kto: the adapter to start from (a name in adapters_dir or a folder); empty = a fresh LoRA on the "
                "base. The reference model is this starting policy."
            ),
        },
    )
    dpo_beta: float = field(
        default=0.1,
        metadata={
            "help": (
                "TRL's default: strength of the pull toward the reference (smaller = the policy may move further)."
            ),
        },
    )
    min_pairs: int = field(
        default=50,
        metadata={"help": "dpo/kto: refuse a run with fewer clean preference pairs in the train split."},
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: "TrainConfig | None" = None) -> "TrainConfig":
        """Build from a dict, refusing unknown keys and coercing strings (YAML and --set give strings like '2e-4')."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(FIELD_TYPES))
        if unknown:
            raise ValueError(
                f"Unknown config key(s): {', '.join(unknown)}; valid keys are: {', '.join(sorted(FIELD_TYPES))}."
            )
        start = dataclasses.replace(base) if base is not None else cls()
        values = {k: coerce(k, v) for k, v in data.items()}
        return dataclasses.replace(start, **values)

    def to_yaml(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"Config file {path} does not exist.")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"Config file {path} is not valid YAML ({str(exc).splitlines()[0]}).") from exc
        if not isinstance(data, dict):
            raise ValueError(f"Config file {path} must hold a mapping of key: value pairs.")
        preset = data.pop("preset", None)
        return cls.from_dict(data, base=preset_config(preset) if preset else None)


FIELD_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(TrainConfig)}


def field_help(name: str) -> str:
    """A field's help text: the one text the CLI `--help` and the Training tab's field info show."""
    return TrainConfig.__dataclass_fields__[name].metadata["help"]


def field_default(name: str) -> Any:
    f = TrainConfig.__dataclass_fields__[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One `--<key> VALUE` flag per field, its help from the field's metadata (as TRL's parser builds SFTConfig's CLI).

    Values stay strings here and are coerced by field type in from_dict, like `--set`; an absent flag leaves no
    attribute.
    """
    group = parser.add_argument_group(
        "config keys", "each sets one TrainConfig field over the preset or YAML (same as --set KEY=VALUE)"
    )
    for f in fields(TrainConfig):
        text = f"{field_help(f.name)} (default: {field_default(f.name)!r})"
        group.add_argument(f"--{f.name}", default=argparse.SUPPRESS, metavar="VALUE", help=text.replace("%", "%%"))


def flag_overrides(ns: argparse.Namespace) -> dict[str, Any]:
    """The config flags given on the command line (see add_config_flags)."""
    return {name: getattr(ns, name) for name in FIELD_TYPES if hasattr(ns, name)}


# ---- presets ---------------------------------------------------------------------------------------------------
PRESETS: dict[str, dict[str, Any]] = {
    # The seed's recipe unchanged: Qwen3-8B, QLoRA NF4 double-quant, r16/a16, lr 2e-4, 2 epochs, batch 4x4.
    "qwen3-8b-qlora": {"base_model": "Qwen/Qwen3-8B", "load_in_4bit": True},
    # Finishes in about 2 minutes on the 2-core dev box: the embedded 135M model, the sample pairs, 30 steps, no 4-bit.
    # lr 1e-3 so a short run visibly moves the model. LoRA only on the top 10 of 30 layers: the backward pass stops
    # there, measured 2.0-2.4 s/step vs 4.4 s/step for all layers (bf16, batch 8 x 115 tokens; fp32 all layers 6.6+ s).
    "cpu-demo": {
        "base_model": EMBEDDED_BASE,
        "dataset": "",
        "load_in_4bit": False,
        "gradient_checkpointing": False,
        "rank": 8,
        "alpha": 16,
        "learning_rate": 1e-3,
        "micro_batch_size": 8,
        "grad_accum": 1,
        "max_steps": 30,
        "warmup_ratio": 0.1,
        "eval_steps": 10,
        "save_steps": 10,
        "logging_steps": 1,
        "max_seq_len": 256,
        "layers_to_transform": list(range(20, 30)),
    },
}


def preset_config(name: str | None) -> TrainConfig:
    if not name:
        return TrainConfig()
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of: {', '.join(PRESETS)}.")
    return TrainConfig.from_dict(PRESETS[name])


def resolve(preset: str | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Preset + overrides, validated. The UI and the CLI both come through here."""
    cfg = TrainConfig.from_dict(overrides or {}, base=preset_config(preset))
    for w in validate(cfg):
        _warnings.warn(w, stacklevel=2)
    return cfg


# ---- coercion ----------------------------------------------------------------------------------------------------
def _to_bool(key: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    s = str(v).strip().lower()
    if s in {"1", "true", "yes", "on"}:
        return True
    if s in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{key} must be true or false, not {v!r}.")


def _to_int(key: str, v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(f"{key} must be a whole number, not {v!r}.")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a whole number, not {v!r}.") from None
    if f != int(f):
        raise ValueError(f"{key} must be a whole number, not {v!r}.")
    return int(f)


def _to_float(key: str, v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"{key} must be a number, not {v!r}.")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number, not {v!r}.") from None


def _to_list(v: Any) -> list:
    if isinstance(v, (list, tuple)):
        return list(v)
    s = str(v).strip().strip("[]")
    return [p.strip().strip("'\"") for p in s.split(",") if p.strip()]


def coerce(key: str, value: Any) -> Any:
    """Convert a raw value (from YAML, --set or a form) to the field's type, with a one-sentence error."""
    t = FIELD_TYPES[key]
    if t == "bool":
        return _to_bool(key, value)
    if t == "int":
        return _to_int(key, value)
    if t == "float":
        return _to_float(key, value)
    if t == "str":
        return "" if value is None else str(value)
    if t == "list[str]":
        return [str(x) for x in _to_list(value)]
    if t == "list[int] | None":
        if value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null", "all"}):
            return None
        return [_to_int(key, x) for x in _to_list(value)]
    raise AssertionError(f"no coercion for {key}: {t}")  # pragma: no cover - a new field type needs a branch


def parse_set(pairs: list[str] | None) -> dict[str, Any]:
    """`--set key=value` pairs to a dict (values coerced later, by field type)."""
    out: dict[str, Any] = {}
    for item in pairs or []:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}.")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


# ---- validation ------------------------------------------------------------------------------------------------
def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard requirement
        return False
    return bool(torch.cuda.is_available())


def validate(cfg: TrainConfig, cuda: bool | None = None) -> list[str]:
    """Raise ValueError (one sentence) for a value that cannot work; return warnings for ones that fall back.

    `cuda` defaults to torch.cuda.is_available(); pass it explicitly to check a config for another machine.
    """

    def bad(msg: str) -> None:
        raise ValueError(msg)

    if cfg.rank <= 0:
        bad(f"LoRA rank must be a positive integer (the seed uses 16), got {cfg.rank}.")
    if cfg.alpha <= 0:
        bad(f"LoRA alpha must be positive (the seed uses 16), got {cfg.alpha}.")
    if not 0.0 <= cfg.dropout < 1.0:
        bad(f"LoRA dropout must be in [0, 1) (the seed uses 0.1), got {cfg.dropout}.")
    if not cfg.target_modules:
        bad("target_modules is empty; name at least one module, e.g. q_proj,v_proj.")
    if cfg.layers_to_transform is not None and (not cfg.layers_to_transform or min(cfg.layers_to_transform) < 0):
        bad(
            "layers_to_transform must be non-negative layer indices or empty for all layers, got "
            f"{cfg.layers_to_transform}."
        )
    if cfg.learning_rate <= 0:
        bad(f"Learning rate must be positive (the seed uses 2e-4), got {cfg.learning_rate}.")
    if cfg.epochs <= 0:
        bad(f"Epochs must be positive (the seed uses 2), got {cfg.epochs}.")
    if cfg.micro_batch_size < 1:
        bad(f"micro_batch_size must be at least 1, got {cfg.micro_batch_size}.")
    if cfg.grad_accum < 1:
        bad(f"grad_accum must be at least 1, got {cfg.grad_accum}.")
    if not 0.0 <= cfg.warmup_ratio < 1.0:
        bad(f"warmup_ratio must be in [0, 1), got {cfg.warmup_ratio}.")
    if cfg.weight_decay < 0:
        bad(f"weight_decay must be zero or positive, got {cfg.weight_decay}.")
    if cfg.max_grad_norm <= 0:
        bad(f"max_grad_norm must be positive, got {cfg.max_grad_norm}.")
    if cfg.max_steps == 0 or cfg.max_steps < -1:
        bad(f"max_steps must be -1 (use epochs) or a positive number of steps, got {cfg.max_steps}.")
    if cfg.max_seq_len < 64:
        bad(f"max_seq_len must be at least 64 tokens (the prompt alone is ~60), got {cfg.max_seq_len}.")
    if cfg.eval_steps < 1 or cfg.save_steps < 1 or cfg.logging_steps < 1:
        bad("eval_steps, save_steps and logging_steps must each be at least 1.")
    if cfg.load_best_model_at_end and cfg.save_steps % cfg.eval_steps:
        bad(
            f"save_steps ({cfg.save_steps}) must be a multiple of eval_steps ({cfg.eval_steps}) to keep the best "
            "checkpoint by eval loss."
        )
    if cfg.save_total_limit < 1:
        bad(f"save_total_limit must be at least 1, got {cfg.save_total_limit}.")
    if cfg.early_stopping_patience < 0 or cfg.early_stopping_threshold < 0:
        bad("early_stopping_patience and early_stopping_threshold must be zero (off) or positive.")
    if not 0.0 < cfg.eval_fraction < 1.0:
        bad(
            f"eval_fraction must be between 0 and 1 (exclusive), got {cfg.eval_fraction}; an empty eval split cannot "
            "pick the best checkpoint."
        )
    if cfg.cpu_dtype not in _DTYPES or cfg.bnb_4bit_compute_dtype not in _DTYPES:
        bad(f"cpu_dtype and bnb_4bit_compute_dtype must be one of {', '.join(_DTYPES)}.")
    if cfg.bnb_4bit_quant_type not in ("nf4", "fp4"):
        bad(f"bnb_4bit_quant_type must be nf4 or fp4, got {cfg.bnb_4bit_quant_type!r}.")
    if cfg.run_name and not _RUN_NAME.match(cfg.run_name):
        bad(
            f"run_name {cfg.run_name!r} must be letters, digits, '.', '_' or '-' (it becomes a folder and the "
            "adapter's name)."
        )
    if str(cfg.fast_path).lower() not in ("auto", "on", "off", "true", "false", "1", "0"):
        bad(f"fast_path must be auto, on or off, got {cfg.fast_path!r}.")
    if cfg.pack_tokens < 64 or cfg.pack_rows < 0:
        bad(f"pack_tokens must be >= 64 and pack_rows >= 0 (0 = auto), got {cfg.pack_tokens} and {cfg.pack_rows}.")
    if cfg.gpus is not None and (len(set(cfg.gpus)) != len(cfg.gpus) or any(g < 0 for g in cfg.gpus)):
        bad(f"gpus must be distinct non-negative CUDA indices, got {cfg.gpus}.")
    if cfg.distributed not in ("ddp", "fsdp"):
        bad(f"distributed must be ddp or fsdp, got {cfg.distributed!r}.")
    if cfg.distributed == "fsdp" and cfg.load_in_4bit:
        bad(
            "FSDP shards full-precision (bf16) weights and cannot shard a 4-bit QLoRA base; set load_in_4bit=false to "
            "use FSDP, "
            "or distributed=ddp to train QLoRA on several GPUs."
        )
    if cfg.kind not in KINDS:
        bad(f"kind must be one of {', '.join(KINDS)}, got {cfg.kind!r}.")
    if cfg.kind != "sft":
        _validate_preference_run(cfg)
    if cfg.dataset and not Path(cfg.dataset).expanduser().exists():
        bad(
            f"Dataset {cfg.dataset} does not exist; export one from the Data tab or leave it empty for the sample data."
        )
    warns: list[str] = []
    if cfg.distributed == "fsdp" and not (cfg.gpus and len(cfg.gpus) > 1):
        warns.append("distributed=fsdp applies only when gpus lists 2 or more GPUs; this run uses one process.")
    if cfg.load_in_4bit and not (cuda_available() if cuda is None else cuda):
        warns.append(
            "4-bit (QLoRA) needs a CUDA GPU with bitsandbytes; no GPU is visible, so the base model is trained "
            f"in {cfg.cpu_dtype} on the CPU instead."
        )
    return warns


def _norm_model(name: str) -> str:
    return str(name).rstrip("/").split("/")[-1].lower()


def resolve_parent(cfg: TrainConfig) -> Path | None:
    """The parent adapter's folder: a path as given, else a name under adapters_dir; None when training from the
    base."""
    if not cfg.parent_adapter:
        return None
    p = Path(cfg.parent_adapter).expanduser()
    return p if p.is_dir() else Path(cfg.adapters_dir) / cfg.parent_adapter


def check_parent_base(parent: Path, base_name: str) -> None:
    """Refuse a parent adapter made for another base model, naming both (same rule as the app's adapter loader)."""
    try:
        made_for = json.loads((parent / "adapter_config.json").read_text()).get("base_model_name_or_path") or ""
    except (OSError, ValueError):
        raise ValueError(
            f"Parent adapter {parent.name} has no readable adapter_config.json; pick an adapter trained in this app."
        ) from None
    if made_for and base_name and _norm_model(made_for) != _norm_model(base_name):
        raise ValueError(
            f"Parent adapter {parent.name} was trained for base model {made_for}, not {base_name}; "
            "pick an adapter trained on this base or change base_model."
        )


def preference_pair_count(dataset: str | Path) -> int:
    """Train pairs in a preference dataset, from its provenance.json (no `datasets` import)."""
    prov = Path(dataset).expanduser() / PROVENANCE_FILE
    if not prov.is_file():
        raise ValueError(
            f"{dataset} is not a preference dataset (no {PROVENANCE_FILE}); build one from the votes "
            "(python -m arena.preferences or the Training tab)."
        )
    return int(json.loads(prov.read_text()).get("n_train") or 0)


def _validate_preference_run(cfg: TrainConfig) -> None:
    """A DPO/KTO run: a preference dataset with enough clean pairs, a positive beta, a parent adapter that exists and
    fits."""
    if cfg.dpo_beta <= 0:
        raise ValueError(f"dpo_beta must be positive (TRL's default is 0.1), got {cfg.dpo_beta}.")
    if cfg.min_pairs < 1:
        raise ValueError(f"min_pairs must be at least 1, got {cfg.min_pairs}.")
    if not cfg.dataset:
        raise ValueError(
            f"A {cfg.kind.upper()} run needs a preference dataset built from the votes; set dataset to its folder."
        )
    n = preference_pair_count(cfg.dataset)
    if n < cfg.min_pairs:
        raise ValueError(
            f"Only {n} clean preference pairs to train on; a {cfg.kind.upper()} run needs at least {cfg.min_pairs} "
            "(collect more votes or lower min_pairs)."
        )
    parent = resolve_parent(cfg)
    if parent is not None:
        if not (parent / "adapter_config.json").is_file():
            raise ValueError(
                f"Parent adapter {cfg.parent_adapter} was not found in {cfg.adapters_dir}; pick one the Arena lists."
            )
        if cfg.base_model:
            check_parent_base(parent, cfg.base_model)


def validate_targets(model: Any, targets: list[str] | None = None) -> None:
    """Refuse a target module the loaded model does not have, naming it and listing the ones it has."""
    import torch.nn as nn

    have: set[str] = set()
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) or type(mod).__name__ in {"Conv1D", "Linear4bit", "Linear8bitLt"}:
            have.add(name.split(".")[-1])
    missing = [t for t in (targets or DEFAULT_TARGETS) if t not in have]
    if missing:
        raise ValueError(
            f"Target module(s) {', '.join(missing)} not found in the loaded model; it has: {', '.join(sorted(have))}."
        )
