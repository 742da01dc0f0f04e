"""Reply Arena: one Gradio Blocks app. Parses flags, builds the shared context, assembles the tabs. Nothing else."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

from context import ROOT, AppContext, Settings, build_context  # noqa: E402


def parse_args(argv=None) -> Settings:
    p = argparse.ArgumentParser(description="Reply Arena: fine-tune, compare and vote on tweet-reply models.")
    p.add_argument("--base-model", default=os.environ.get("BASE_MODEL", ""), help="hub id or local dir; empty = embedded SmolLM2-135M (offline)")
    p.add_argument("--load-in-4bit", action="store_true", default=os.environ.get("LOAD_IN_4BIT", "") in ("1", "true"), help="NF4 double-quant on CUDA")
    p.add_argument("--device", default=os.environ.get("DEVICE", "auto"), help="auto | cpu | cuda")
    p.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"), help="votes, reviews, runs (use /data on Spaces)")
    p.add_argument("--adapters-dir", default=os.environ.get("ADAPTERS_DIR", "adapters"))
    p.add_argument("--backend", choices=["local", "openai"], default=os.environ.get("BACKEND", "local"),
                   help="local = the model in this process; openai = an OpenAI-compatible server such as vLLM (README)")
    p.add_argument("--openai-base-url", default=os.environ.get("OPENAI_BASE_URL", ""), help="e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--openai-model", default=os.environ.get("OPENAI_MODEL", ""), help="the base model's name there; empty = the first listed")
    p.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "7860")))
    a = p.parse_args(argv)
    s = Settings(base_model=a.base_model, load_in_4bit=a.load_in_4bit, device=a.device, data_dir=Path(a.data_dir), adapters_dir=Path(a.adapters_dir))
    s.backend, s.openai_base_url, s.openai_model = a.backend, a.openai_base_url, a.openai_model
    s.host, s.port = a.host, a.port  # type: ignore[attr-defined]
    return s


def build_app(ctx: AppContext) -> gr.Blocks:
    from arena.ui import build_arena_tabs
    from evaluation.ui import build_evaluate_tab
    from generation.ui import build_generate_tab
    from security.ui import build_admin_panel
    from training.ui import build_data_tab, build_training_tab

    with gr.Blocks(title="Reply Arena") as demo:
        gr.Markdown("# Reply Arena\nBase vs RAG vs LoRA replies to tweets — generate, battle anonymously, and see who really wins.")
        for b in ctx.banners:
            gr.Markdown(f"> ⚠️ {b}", elem_classes=["banner"])
        build_admin_panel(ctx)
        with gr.Tabs():
            build_generate_tab(ctx)
            build_arena_tabs(ctx)
            build_data_tab(ctx)
            build_training_tab(ctx)
            build_evaluate_tab(ctx)
    return demo


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = parse_args(argv)
    ctx = build_context(settings)
    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=4).launch(server_name=settings.host, server_port=settings.port, share=False,
                                                   css_paths=[ROOT / "assets" / "app.css"], footer_links=[])


if __name__ == "__main__":
    main()
