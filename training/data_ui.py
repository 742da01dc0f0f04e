"""Data tab (admin): import, funnel, review, export."""
from __future__ import annotations

import gradio as gr


def build_data_tab(ctx) -> None:
    with gr.Tab("Data (admin)", id="data"):
        gr.Markdown("Import X exports, filter, dedup and review pairs. _Being wired to the data pipeline._")
