"""UI-free glue for the Training tab: one RunManager per app, config from form fields, curves and progress as data."""

from __future__ import annotations

import html
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .config import PRESETS, TrainConfig, resolve  # noqa: E402
from .data.export import list_exported  # noqa: E402
from .run_view import sig4  # noqa: E402
from .runner import RunManager  # noqa: E402

SAMPLE = "sample data (assets/sample_pairs.jsonl)"


def manager_for(ctx) -> RunManager:
    return ctx.runs


def dataset_choices(data_dir) -> list[tuple[str, str]]:
    out = [(SAMPLE, "")]
    for e in list_exported(data_dir):
        out.append((f"{e.name} ({e.n_train} train / {e.n_eval} eval)", e.path))
    return out


def build_config(preset: str, dataset: str, overrides: dict[str, Any], base_model: str | None = None) -> TrainConfig:
    """Preset + non-empty overrides. Raises ValueError with a user-facing sentence on bad values."""
    clean = {k: v for k, v in overrides.items() if v not in (None, "")}
    if "gpus" in clean and isinstance(clean["gpus"], str):
        try:
            clean["gpus"] = [int(x) for x in clean["gpus"].replace(" ", "").split(",") if x]
        except ValueError as exc:
            raise ValueError("GPUs must be a comma-separated list of device numbers, like 0,1.") from exc
    if dataset:
        clean["dataset"] = dataset
    if base_model is not None and preset == "cpu-demo":
        clean.setdefault("base_model", base_model)
    return resolve(preset, clean)


def progress_html(status) -> str:
    """A progress bar from numbers only (nothing user-typed), so it is safe as HTML."""
    pct = max(0.0, min(100.0, 100.0 * float(status.progress or 0.0)))
    eta = f" · ETA {int(status.eta_s // 60)} min {int(status.eta_s % 60)} s" if status.eta_s else ""
    tps = status.last.get("tokens_per_s") if status.last else None
    speed = f" · {tps:,.0f} tokens/s" if tps else ""
    return (
        f"<div style='border:1px solid #ccc;border-radius:6px;height:18px;overflow:hidden'>"
        f"<div style='background:#2563eb;height:100%;width:{pct:.1f}%'></div></div>"
        f"<div id='train-progress-text'>{html.escape(status.state)} · step {status.step}/{status.max_steps or '?'} "
        f"({pct:.0f}%){eta}{speed}</div>"
    )


PREFERENCE_CURVES = (
    ("rewards/chosen", "#16a34a"),
    ("rewards/rejected", "#dc2626"),
    ("rewards/margins", "#7c3aed"),
    ("rewards/accuracies", "#0891b2"),
)


def loss_figure(history: list[dict]):
    """Loss curves; a DPO/KTO run (its log has rewards/*) gets a second panel with TRL's reward curves."""
    pref = any(h.get("rewards/margins") is not None for h in history)
    fig, axes = plt.subplots(1, 2 if pref else 1, figsize=(11 if pref else 7, 3.2))
    ax = axes[0] if pref else axes
    if pref:
        for key, color in PREFERENCE_CURVES:
            pts = [(h["step"], h[key]) for h in history if h.get("event") == "train" and h.get(key) is not None]
            if pts:
                axes[1].plot(*zip(*pts), label=key, color=color)
        axes[1].set_xlabel("step")
        axes[1].set_ylabel("reward (β · log-ratio) / accuracy")
        axes[1].legend(loc="upper left", fontsize=8)
    tr = [(h["step"], h["loss"]) for h in history if h.get("loss") is not None and h.get("step") is not None]
    ev = [(h["step"], h["eval_loss"]) for h in history if h.get("eval_loss") is not None and h.get("step") is not None]
    if tr:
        ax.plot(*zip(*tr), label="train loss", color="#2563eb")
    if ev:
        ax.plot(*zip(*ev), "o-", label="eval loss", color="#d97706")
    if not tr and not ev:
        ax.text(0.5, 0.5, "no losses logged yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(loc="upper right") if (tr or ev) else None
    fig.tight_layout()
    return fig


def history_rows(runs: list[dict]) -> list[list]:
    rows = []
    for r in runs:
        m, c = r.get("metrics") or {}, r.get("config") or {}
        rows.append(
            [
                r["run_id"],
                r["state"],
                c.get("base_model") or "embedded",
                c.get("rank"),
                c.get("learning_rate"),
                c.get("epochs"),
                sig4(m.get("train_loss")),
                sig4(m.get("eval_loss")),
                r.get("adapter_path") or "",
                r.get("wandb_dir") or "",
                (r.get("error") or "")[:120],
            ]
        )
    return rows


HISTORY_COLUMNS = [
    "run",
    "state",
    "base",
    "rank",
    "lr",
    "epochs",
    "train loss",
    "eval loss",
    "adapter",
    "W&B dir",
    "error",
]
PRESET_NAMES = list(PRESETS)
