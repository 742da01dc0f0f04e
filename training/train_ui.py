"""Training tab (admin): background LoRA runs with live curves."""
from __future__ import annotations

import gradio as gr


def build_training_tab(ctx) -> None:
    with gr.Tab("Training (admin)", id="training"):
        gr.Markdown("Launch background LoRA/QLoRA runs and watch their curves. _Being wired to the trainer._")
