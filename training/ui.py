"""Data and Training tabs (admin). Filled by the data and training work; every handler checks admin server-side."""
from __future__ import annotations

import gradio as gr


def build_data_tab(ctx) -> None:
    with gr.Tab("Data (admin)", id="data"):
        gr.Markdown("Import X exports, filter, dedup and review pairs. _Coming with the data pipeline issue._")


def build_training_tab(ctx) -> None:
    with gr.Tab("Training (admin)", id="training"):
        gr.Markdown("Launch background LoRA/QLoRA runs and watch their curves. _Coming with the training issue._")
