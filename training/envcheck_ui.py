"""System tab (admin): the environment check (training/envcheck.py) on demand, as a table in words."""

from __future__ import annotations

import logging

import gradio as gr

from security import AdminRequired, inert

from .envcheck import run_checks

log = logging.getLogger(__name__)


def build_system_tab(ctx) -> None:
    with gr.Tab("System (admin)", id="system"):
        gr.Markdown(
            "What this machine can do: torch / CUDA / GPUs, the training packages, 4-bit loading, W&B, disk. "
            "Each missing piece says what it turns off and how to fix it. Same as `python -m training.envcheck`."
        )
        btn = gr.Button("Run the environment check", variant="primary", elem_id="system-check")
        out = gr.Markdown("", elem_id="system-report")

    def on_check(request: gr.Request):
        try:
            ctx.gate.require(request)
        except AdminRequired as exc:
            return f"⚠️ {inert(str(exc))}"
        try:
            rep = run_checks(ctx.settings.data_dir, tracking=ctx.settings.wandb_mode)
        except Exception as exc:  # a broken install must not show a traceback
            log.exception("environment check failed")
            return (
                f"⚠️ The check itself failed ({inert(type(exc).__name__)}); "
                "run `python -m training.envcheck` for details."
            )
        return rep.markdown()

    btn.click(on_check, None, [out])
