"""Reply Arena: one Gradio Blocks app. Parses flags, builds the shared context, assembles the tabs. Nothing else."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from context import ROOT, AppContext, Settings, build_context  # first: it sets the offline env defaults

import gradio as gr

from arena.ui import build_arena_tab, build_leaderboard_tab
from evaluation.ui import build_evaluate_tab
from generation.ui import build_generate_tab
from security.launch import launch_options
from security.ui import build_admin_panel
from training.data.ui import build_data_tab
from training.envcheck_ui import build_system_tab
from training.ui import build_training_tab


def parse_args(argv=None, defaults: Settings | None = None) -> Settings:
    """Flags override the environment (read by context.Settings.from_env)."""
    d = defaults or Settings.from_env()
    p = argparse.ArgumentParser(description="Reply Arena: fine-tune, compare and vote on tweet-reply models.")
    p.add_argument(
        "--base-model", default=d.base_model, help="hub id or local dir; empty = embedded SmolLM2-135M (offline)"
    )
    p.add_argument("--load-in-4bit", action="store_true", default=d.load_in_4bit, help="NF4 double-quant on CUDA")
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda")
    p.add_argument("--no-model", action="store_true", help="start without a model (data / training / leaderboard only)")
    p.add_argument("--data-dir", default=str(d.data_dir), help="votes, reviews, runs (use /data on Spaces)")
    p.add_argument("--adapters-dir", default=str(d.adapters_dir))
    p.add_argument(
        "--backend",
        choices=["local", "openai"],
        default=d.backend,
        help="local = the model in this process; openai = an OpenAI-compatible server such as vLLM (README)",
    )
    p.add_argument("--openai-base-url", default=d.openai_base_url, help="e.g. http://127.0.0.1:8000/v1")
    p.add_argument(
        "--openai-model", default=d.openai_model, help="the base model's name there; empty = the first listed"
    )
    p.add_argument("--host", default=d.host)
    p.add_argument("--port", type=int, default=d.port)
    p.add_argument(
        "--behind-proxy",
        type=int,
        default=d.proxy_hops,
        metavar="N",
        help="proxies in front whose X-Forwarded-For entry is trusted (env BEHIND_PROXY; 1 on Spaces, else 0)",
    )
    a = p.parse_args(argv)
    return dataclasses.replace(
        d,
        base_model=a.base_model,
        load_in_4bit=a.load_in_4bit,
        device=a.device,
        load_model=not a.no_model,
        data_dir=Path(a.data_dir),
        adapters_dir=Path(a.adapters_dir),
        host=a.host,
        port=a.port,
        proxy_hops=a.behind_proxy,
        backend=a.backend,
        openai_base_url=a.openai_base_url,
        openai_model=a.openai_model,
    )


def build_app(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="Reply Arena") as demo:
        gr.Markdown(
            "# Reply Arena\nBase vs RAG vs LoRA replies to tweets — generate, battle anonymously, and see who really "
            "wins."
        )
        for b in ctx.banners:
            gr.Markdown(f"> ⚠️ {b}", elem_classes=["banner"])
        build_admin_panel(ctx)
        with gr.Tabs():
            build_generate_tab(ctx)
            build_arena_tab(ctx)
            build_leaderboard_tab(ctx)
            build_data_tab(ctx)
            build_training_tab(ctx)
            build_evaluate_tab(ctx)
            build_system_tab(ctx)
    return demo


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = parse_args(argv)
    ctx = build_context(settings)
    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=4).launch(
        server_name=settings.host,
        server_port=settings.port,
        share=False,
        css_paths=[ROOT / "assets" / "app.css"],
        footer_links=[],
        **launch_options(ctx),
    )


if __name__ == "__main__":
    main()
