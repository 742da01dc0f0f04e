"""Evaluate tab (admin): LLM judge, metrics, report."""
from __future__ import annotations

import gradio as gr


def build_evaluate_tab(ctx) -> None:
    with gr.Tab("Evaluate (admin)", id="evaluate"):
        gr.Markdown("Batch replies on held-out tweets, LLM judge with position swap, significance tests and a report. "
                    "_Coming with the evaluation issue._")
