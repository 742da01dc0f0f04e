"""Preference training (DPO, KTO) with TRL on the Arena's cleaned votes: the `dpo` / `kto` run kinds.

    python -m training.dpo --config run.yaml --run-dir data/runs/dpo-v2 [--resume]

The runner starts this module instead of training.train when the config's kind is dpo or kto (training/launch.py);
run folder, lock, status.json, trainer_log.jsonl, stop and resume are the SFT trainer's own (training.train.main).

* Same base model, loaded by the same loader (QLoRA NF4 on CUDA when load_in_4bit).
* The policy starts from the parent adapter (an SFT adapter, trainable) or from a fresh LoRA on the seed's 7 modules.
* The reference is the starting policy without the new update and without a second model in memory: TRL copies the
  parent adapter into a frozen adapter named "ref" (a few MB of LoRA weights) and switches to it for the reference
  forward; with no parent, the reference is the base (adapters disabled).
* Curves: TRL's rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies land in trainer_log.jsonl.
* The adapter joins the Arena by appearing in adapters_dir, with lineage.json (parent, vote ids, training tweets, time)
  and the dataset's provenance.json, written before the folder is renamed into place.
* Speed (bench/gpu_dpo.py): bf16 autocast, fused AdamW and dropout off as on the SFT fast path. With `fast_path: on`
  (explicitly; not with auto) the reference log-probs are computed once before training, so each step runs only the
  policy: the one GPU try of that pass (H200, 2026-11-30) stopped making progress at batch 68 of 76 for unknown reasons
  (bench/results/gpu-dpo-bf16-nvidia-h200-2026-11-30-timeout.log), so it stays opt-in until a GPU run clears it.
  Packing and Liger's fused cross-entropy do not apply to TRL's chosen/rejected batches as they are.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from arena.lineage import LINEAGE_FILE, lineage_record

from .callbacks import FailAtStep, JsonlLogCallback, StatusFile, StopCallback, StopFlag
from .config import PROVENANCE_FILE, TrainConfig, check_parent_base, resolve_parent, validate, validate_targets
from .fastpath import fast_plan
from .formatting import IGNORE_INDEX, end_of_turn_token, format_example
from .rundir import LOG_FILE, read_jsonl
from .tracking import WandbTracker
from .train import (
    CHECKPOINTS,
    Launch,
    _begin_run,
    _finish_completed,
    _finish_stopped,
    _generation_config,
    _peak_gpu_gib,
    _split_for_ranks,
    last_checkpoint,
    load_model,
    save_adapter,
    sha256_path,
)
from .train import main as train_main

log = logging.getLogger("training.dpo")
PREF_LOG_KEYS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "kl",
)
_COLUMNS = {
    "dpo": ("prompt", "chosen", "rejected", "chat_template_kwargs"),
    "kto": ("prompt", "completion", "label", "chat_template_kwargs"),
}


def load_preferences(cfg: TrainConfig) -> tuple[Any, Any, dict]:
    """(train, eval or None, provenance) of the preference dataset; KTO reads its kto/ sub-folder."""
    from datasets import load_from_disk

    root = Path(cfg.dataset).expanduser()
    prov = json.loads((root / PROVENANCE_FILE).read_text())
    dd = load_from_disk(str(root / "kto" if cfg.kind == "kto" else root))
    keep = _COLUMNS[cfg.kind]
    train = dd["train"].select_columns(list(keep))
    evl = dd["eval"].select_columns(list(keep)) if "eval" in dd and len(dd["eval"]) else None
    return train, evl, prov


def reply_logprob(model, tokenizer, tweet: str, reply: str, max_len: int = 512) -> float:
    """Sum of log P(reply + <|im_end|> | prompt) under `model`, tokenized exactly as the trainer formats it."""
    import torch

    ex = format_example(tokenizer, tweet, reply, max_len)
    if ex is None:
        raise ValueError("The reply does not fit in max_len tokens.")
    ids = torch.tensor([ex["input_ids"]], device=model.device)
    labels = torch.tensor([ex["labels"]], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].float()
    tgt = labels[:, 1:]
    mask = tgt != IGNORE_INDEX
    lp = torch.log_softmax(logits, dim=-1).gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float((lp * mask).sum())


def preference_margins(model, tokenizer, pairs: list[dict], max_len: int = 512) -> list[float]:
    """log P(chosen) - log P(rejected) per pair (rows: tweet, chosen, rejected); > 0 = the model prefers the chosen
    reply."""
    return [
        reply_logprob(model, tokenizer, p["tweet"], p["chosen"], max_len)
        - reply_logprob(model, tokenizer, p["tweet"], p["rejected"], max_len)
        for p in pairs
    ]


def _trainer_classes(kind: str):
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

    return (DPOConfig, DPOTrainer) if kind == "dpo" else (KTOConfig, KTOTrainer)


def train_preference(
    cfg: TrainConfig, run_dir: Path, resume: bool = False, stop: StopFlag | None = None, launch: Launch | None = None
) -> dict:
    """One DPO/KTO run end to end; returns the final status dict. Raises on failure (training.train.main records it).
    ``launch``: how this process was started (training.train.main reads it); default a single process."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if cfg.kind not in _COLUMNS:
        raise ValueError(
            f"training.dpo trains kind dpo or kto, not {cfg.kind!r}; SFT runs use python -m training.train."
        )
    t_start = time.time()
    stop = stop or StopFlag()
    launch = launch or Launch()
    run_dir = Path(run_dir)
    run_id = cfg.run_name or run_dir.name
    is_main, world = launch.is_main, launch.world_size  # several GPUs: one process each (DDP via accelerate)
    status = StatusFile(run_dir, enabled=is_main)
    warnings = validate(cfg)  # also: enough clean pairs, the parent adapter exists (and fits a named base)
    ckpt = _begin_run(status, run_dir, run_id, t_start, warnings, resume, is_main, kind=cfg.kind)

    train_ds, eval_ds, prov = load_preferences(cfg)  # before the model: a data problem costs a second
    parent = resolve_parent(cfg)
    device = f"cuda:{launch.local_rank or 0}" if torch.cuda.is_available() else "cpu"
    on_cuda = device.startswith("cuda")
    status.update(phase="loading model", device=device, world_size=world, distributed="ddp" if world > 1 else None)
    torch.manual_seed(cfg.seed)
    loaded, use_4bit = load_model(cfg, device, warnings)
    if parent is not None:
        check_parent_base(parent, loaded.name)  # by the name the app loads the base as (the embedded model included)
    model, tok = loaded.model, loaded.tokenizer
    validate_targets(model, cfg.target_modules)
    if stop.is_set():
        return _finish_stopped(
            status, "Stopped while loading; nothing was trained.", rank_result=True, rank=launch.rank
        )
    eot = end_of_turn_token(tok)
    model.generation_config.eos_token_id = _generation_config(model, tok, eot).eos_token_id
    model.config.use_cache = False
    if use_4bit:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if parent is not None:
        pm = PeftModel.from_pretrained(model, str(parent), is_trainable=True)  # TRL adds the frozen "ref" copy
    else:
        pm = get_peft_model(
            model,
            LoraConfig(
                r=cfg.rank,
                lora_alpha=cfg.alpha,
                lora_dropout=cfg.dropout,
                target_modules=list(cfg.target_modules),
                layers_to_transform=list(cfg.layers_to_transform) if cfg.layers_to_transform else None,
                bias="none",
                task_type="CAUSAL_LM",
            ),
        )

    fast = fast_plan(cfg, on_cuda)
    report_to = "none"  # W&B goes through training.tracking, as for SFT runs (one W&B run per training run)
    data_info = {
        "source": str(cfg.dataset),
        "kind": "preferences",
        "sha256": sha256_path(Path(cfg.dataset)),
        "n_train": len(train_ds),
        "n_eval": len(eval_ds) if eval_ds is not None else 0,
        "vote_set_sha256": prov.get("vote_set_sha256"),
    }
    tracker = WandbTracker(
        run_dir, cfg.wandb_project, run_id, cfg.to_dict(), data_info, enabled=is_main, mode=launch.wandb_mode
    )
    grad_accum, _ = _split_for_ranks(cfg.grad_accum, None, world)  # the recipe's pairs per optimizer step, shared
    if world > 1:
        log.info(
            "Rank %d of %d (DDP): %d x %d pairs per rank per optimizer step.",
            launch.rank,
            world,
            cfg.micro_batch_size,
            grad_accum,
        )
    wandb_dir = tracker.start().local_dir
    Config, Trainer = _trainer_classes(cfg.kind)
    args = Config(
        output_dir=str(run_dir / CHECKPOINTS),
        run_name=run_id,
        report_to=report_to,
        seed=cfg.seed,
        data_seed=cfg.seed,
        per_device_train_batch_size=cfg.micro_batch_size,
        per_device_eval_batch_size=cfg.micro_batch_size,
        gradient_accumulation_steps=grad_accum,
        ddp_find_unused_parameters=False if world > 1 else None,
        learning_rate=cfg.learning_rate,
        num_train_epochs=float(cfg.epochs),
        max_steps=cfg.max_steps,
        warmup_steps=float(cfg.warmup_ratio),
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        optim="adamw_torch_fused" if fast.fused_adamw else "adamw_torch",
        eval_strategy="steps" if eval_ds is not None else "no",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        bf16=on_cuda,
        use_cpu=not on_cuda,
        gradient_checkpointing=cfg.gradient_checkpointing and on_cuda,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        dataloader_num_workers=0,
        disable_tqdm=True,
        beta=cfg.dpo_beta,
        max_length=cfg.max_seq_len,
        precompute_ref_log_probs=str(cfg.fast_path).lower() in ("on", "true", "1"),
        disable_dropout=True,
    )
    log_cb = JsonlLogCallback(run_dir, status, enabled=is_main, extra_keys=PREF_LOG_KEYS)
    stop_cb = StopCallback(stop)
    callbacks: list = [log_cb, stop_cb, tracker]
    if launch.fail_at_step is not None:
        callbacks.append(FailAtStep(launch.fail_at_step))
    status.update(phase="preparing pairs")
    trainer = Trainer(
        model=pm, args=args, train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tok, callbacks=callbacks
    )
    status.update(
        phase="training", wandb_dir=wandb_dir, n_train=len(train_ds), n_eval=len(eval_ds) if eval_ds is not None else 0
    )
    out = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    state = trainer.state
    peaks = _peak_gpu_gib(device, world)  # collective on several GPUs: every rank calls it here
    if stop_cb.stopped_at is not None and state.global_step < state.max_steps:
        ck = last_checkpoint(run_dir)
        tracker.finish({"global_step": state.global_step}, state="stopped")
        return _finish_stopped(
            status,
            None,
            step=state.global_step,
            checkpoint=str(ck) if ck else None,
            rank_result=True,
            rank=launch.rank,
        )

    ev: dict[str, Any] = {}
    last_eval = next((h for h in reversed(state.log_history) if "eval_loss" in h), None)
    if eval_ds is not None and last_eval is not None and last_eval.get("step") == state.global_step:
        ev = dict(last_eval)  # the trainer already evaluated after the last step
    elif eval_ds is not None:
        status.update(phase="final evaluation")
        log_cb.final = True
        ev = trainer.evaluate()
    runtime = out.metrics.get("train_runtime") or 0.0
    pairs_seen = state.global_step * cfg.micro_batch_size * grad_accum * world
    events = read_jsonl(run_dir / LOG_FILE)
    first = next((e for e in events if e.get("event") == "train" and e.get("rewards/margins") is not None), {})
    metrics: dict[str, Any] = {
        "run_id": run_id,
        "kind": cfg.kind,
        "base_model": loaded.name,
        "parent_adapter": parent.name if parent else "",
        "device": device,
        "dtype": loaded.dtype,
        "quantized": loaded.quantized,
        "train_loss": out.training_loss,
        "global_step": state.global_step,
        "max_steps": state.max_steps,
        "train_runtime_s": runtime,
        "pairs_per_s": round(pairs_seen / runtime, 3) if runtime else None,
        "n_train": len(train_ds),
        "n_eval": len(eval_ds) if eval_ds is not None else 0,
        "first_margin": first.get("rewards/margins"),
        **{k: v for k, v in ev.items() if isinstance(v, (int, float))},
        "vote_set_sha256": prov.get("vote_set_sha256"),
        "precomputed_reference": bool(args.precompute_ref_log_probs),
        "wall_s": round(time.time() - t_start, 1),
        "peak_gib": max(peaks) if peaks else None,
        "peak_gib_per_rank": peaks,
        "world_size": world,
    }
    if not is_main:  # rank 0 saves the adapter; the others record nothing and end
        return _finish_completed(
            status,
            tracker,
            run_dir,
            state,
            metrics,
            ev.get("eval_loss"),
            None,
            log_cb.t0,
            is_main=False,
            rank_result=True,
            rank=launch.rank,
        )
    status.update(phase="saving adapter")
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in unwrapped.peft_config:
        unwrapped.delete_adapter("ref")  # the saved adapter is the policy only
    unwrapped.set_adapter("default")
    lineage = lineage_record(
        kind=cfg.kind, parent_adapter=parent.name if parent else "", base_model=loaded.name, provenance=prov
    )
    adapter_path = str(
        save_adapter(
            unwrapped,
            tok,
            cfg,
            run_id,
            data_info,
            metrics,
            eot,
            loaded.name,
            extra_files={LINEAGE_FILE: json.dumps(lineage, indent=1), PROVENANCE_FILE: json.dumps(prov, indent=1)},
        )
    )
    return _finish_completed(status, tracker, run_dir, state, metrics, ev.get("eval_loss"), adapter_path, log_cb.t0)


def main(argv: list[str] | None = None) -> int:
    return train_main(argv, train_fn=train_preference)


if __name__ == "__main__":
    sys.exit(main())
