"""Training tab (admin): start a background LoRA run, watch it live, stop it, read diagnostics, train v2.

State lives in files under --data-dir (rundir.py / runner.py), so a refresh or a second browser shows the same run.
"""
from __future__ import annotations

import json

import gradio as gr
import yaml

from security import AdminRequired, inert

from .config import TrainConfig, field_help
from .diagnostics import report, suggest_v2
from .loop_ui import build_loop_section
from .service import (
    HISTORY_COLUMNS,
    PRESET_NAMES,
    build_config,
    dataset_choices,
    history_rows,
    loss_figure,
    manager_for,
    progress_html,
)
from .tracking import read_tracking, tracking_markdown


def build_training_tab(ctx) -> None:
    rm = manager_for(ctx)
    gate = ctx.gate
    with gr.Tab("Training (admin)", id="training") as tab:
        msg = gr.Markdown("", elem_id="train-msg")
        with gr.Row():
            with gr.Column(scale=2):
                preset = gr.Dropdown(PRESET_NAMES, value="cpu-demo", label="Preset", info="qwen3-8b-qlora = the seed's recipe; cpu-demo = embedded model, minutes on a CPU")
                dataset = gr.Dropdown(choices=[], value="", label="Dataset (exported in the Data tab)", allow_custom_value=True,
                                      info=field_help("dataset"))
                # Field info is the TrainConfig field's help metadata: the same text as `python -m training.train --help`.
                with gr.Row():
                    rank = gr.Number(label="rank", precision=0, info=field_help("rank"))
                    alpha = gr.Number(label="alpha", precision=0, info=field_help("alpha"))
                    lr = gr.Number(label="learning rate", info=field_help("learning_rate"))
                with gr.Row():
                    epochs = gr.Number(label="epochs", info=field_help("epochs"))
                    max_steps = gr.Number(label="max steps (-1 = epochs)", precision=0, elem_id="train-max-steps", info=field_help("max_steps"))
                    mb = gr.Number(label="micro-batch", precision=0, info=field_help("micro_batch_size"))
                with gr.Row():
                    run_name = gr.Textbox(label="run name (empty = generated)", elem_id="train-run-name", info=field_help("run_name"))
                    gpus = gr.Textbox(label="GPUs (e.g. 0,1)", info=field_help("gpus"))
                with gr.Row():
                    preview_btn = gr.Button("Preview config")
                    start_btn = gr.Button("Start run", variant="primary", elem_id="train-start")
            with gr.Column(scale=2):
                config_view = gr.Code(label="Resolved config", language="yaml")
        gr.Markdown("### Live run")
        with gr.Row():
            run_pick = gr.Dropdown(choices=[], label="Run", scale=3, elem_id="train-run")
            stop_btn = gr.Button("Stop", variant="stop", scale=1, elem_id="train-stop")
            refresh_btn = gr.Button("Refresh", scale=1)
        progress = gr.HTML("", elem_id="train-progress")
        tracking = gr.Markdown("", elem_id="train-tracking")  # W&B link, or the offline folder + `wandb sync`
        curve = gr.Plot(label="Loss curves")
        log_tail = gr.Textbox(label="Log (last lines)", lines=8, interactive=False, elem_id="train-log")
        gr.Markdown("### Diagnostics and v2")
        diag = gr.Markdown("")
        v2_view = gr.Code(label="Suggested v2 config", language="yaml")
        v2_btn = gr.Button("Train v2 with these changes")
        loop_refresh, loop_in, loop_out = build_loop_section(ctx, rm, gate, preset, msg, run_pick)
        gr.Markdown("### Run history")
        history = gr.Dataframe(headers=HISTORY_COLUMNS, interactive=False, wrap=True)
        timer = gr.Timer(2.0, active=False)  # switched on for admins when the tab is opened

    overrides = [rank, alpha, lr, epochs, max_steps, mb, run_name, gpus]
    keys = ["rank", "alpha", "learning_rate", "epochs", "max_steps", "micro_batch_size", "run_name", "gpus"]

    def _cfg(p, ds, vals):
        return build_config(p, ds or "", dict(zip(keys, vals)))

    # Explicit parameters (no *args): Gradio injects gr.Request only into plainly declared parameters.
    def on_preview(p, ds, v1, v2, v3, v4, v5, v6, v7, v8, request: gr.Request):
        try:
            gate.require(request)
            cfg = _cfg(p, ds, [v1, v2, v3, v4, v5, v6, v7, v8])
        except (AdminRequired, ValueError) as exc:
            return f"⚠️ {inert(str(exc))}", gr.update()
        return "", yaml.safe_dump(cfg.to_dict(), sort_keys=False)

    def on_start(p, ds, v1, v2, v3, v4, v5, v6, v7, v8, request: gr.Request):
        try:
            gate.require(request)
            handle = rm.start(_cfg(p, ds, [v1, v2, v3, v4, v5, v6, v7, v8]))
        except AdminRequired as exc:
            return f"⚠️ {inert(str(exc))}", gr.update()
        except Exception as exc:  # RunError (one run at a time), ValueError (bad config): one sentence, nothing started
            return f"⚠️ {inert(str(exc))}", gr.update()
        return f"Started **{inert(handle.run_id)}** (pid {handle.pid}).", gr.update(choices=[r["run_id"] for r in rm.runs()], value=handle.run_id)

    def on_poll(run_id, request: gr.Request):
        if not gate.is_admin(request):
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
        runs = rm.runs()
        ids = [r["run_id"] for r in runs]
        run_id = run_id if run_id in ids else (rm.active_run() or (ids[0] if ids else None))
        if not run_id:
            return gr.update(choices=ids), "<div id='train-progress-text'>no runs yet</div>", None, "", gr.update(value=history_rows(runs)), "", ""
        st = rm.status(run_id, tail=30)
        tail = st.log_tail + (f"\n\nERROR: {st.error}" if st.error else "")
        diag_md = ""
        if st.state in ("completed", "stopped") and st.history:
            findings, new = suggest_v2(_run_config(rm, run_id), st.history)
            diag_md = report(findings, new, _run_config(rm, run_id))
        elif st.state == "failed":
            diag_md = f"**Run failed:** {inert(st.error or 'see the log')}"
        return (gr.update(choices=ids, value=run_id), progress_html(st), loss_figure(st.history), tail, gr.update(value=history_rows(runs)), diag_md,
                tracking_markdown(read_tracking(st.run_dir)))

    def on_stop(run_id, request: gr.Request):
        try:
            gate.require(request)
            st = rm.stop(run_id)
        except AdminRequired as exc:
            return f"⚠️ {inert(str(exc))}"
        except Exception as exc:
            return f"⚠️ {inert(str(exc))}"
        return f"Run **{inert(run_id)}** is {st.state}; checkpoint saved, process gone."

    def on_v2_preview(run_id, request: gr.Request):
        if not gate.is_admin(request) or not run_id:
            return gr.update()
        st = rm.status(run_id, tail=0)
        if not st.history:
            return ""
        _, new = suggest_v2(_run_config(rm, run_id), st.history)
        return yaml.safe_dump(new, sort_keys=False)

    def on_v2_start(run_id, request: gr.Request):
        try:
            gate.require(request)
            st = rm.status(run_id, tail=0)
            _, new = suggest_v2(_run_config(rm, run_id), st.history)
            for k in ("output_dir", "adapters_dir"):
                new.pop(k, None)
            handle = rm.start(TrainConfig.from_dict(new))
        except Exception as exc:
            return f"⚠️ {inert(str(exc))}", gr.update()
        return f"Started v2 run **{inert(handle.run_id)}**.", gr.update(choices=[r["run_id"] for r in rm.runs()], value=handle.run_id)

    def preset_values(p, request: gr.Request):
        """The form shows the preset's own values, so an untouched field keeps the preset's setting."""
        if not gate.is_admin(request):
            return [gr.update()] * 6
        c = build_config(p, "", {}).to_dict()
        return [c["rank"], c["alpha"], c["learning_rate"], c["epochs"], c["max_steps"], c["micro_batch_size"]]

    def on_tab(request: gr.Request):
        if not gate.is_admin(request):
            return (gr.update(choices=[("log in as admin first", "")], value=""),
                    (gate.how_to_enable() if not gate.enabled else "Log in as admin (top of the page) to use this tab."), gr.Timer(active=False))
        ch = dataset_choices(ctx.settings.data_dir)
        return gr.update(choices=ch, value=ch[0][1]), "", gr.Timer(active=True)

    poll_out = [run_pick, progress, curve, log_tail, history, diag, tracking]
    preview_btn.click(on_preview, [preset, dataset] + overrides, [msg, config_view])
    start_btn.click(on_start, [preset, dataset] + overrides, [msg, run_pick])
    stop_btn.click(on_stop, [run_pick], [msg])
    refresh_btn.click(on_poll, [run_pick], poll_out)
    timer.tick(on_poll, [run_pick], poll_out, show_progress="hidden")
    run_pick.change(on_v2_preview, [run_pick], [v2_view])
    v2_btn.click(on_v2_start, [run_pick], [msg, run_pick])
    tab.select(on_tab, None, [dataset, msg, timer]).then(on_poll, [run_pick], poll_out)
    tab.select(loop_refresh, loop_in, loop_out)
    numeric = overrides[:6]  # run name and GPUs are the user's own, never reset by a preset
    preset.change(preset_values, [preset], numeric)
    tab.select(preset_values, [preset], numeric)


def _run_config(rm, run_id: str) -> dict:
    row = rm.registry.get(run_id) or {}
    return json.loads(row.get("config_json") or "{}")
