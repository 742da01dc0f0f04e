"""Training tab (admin): start a background LoRA run, watch it live, stop or resume it, read diagnostics, train v2,
save/load the config as YAML, and turn a checkpoint into an adapter.

State lives in files under --data-dir (rundir.py / runner.py), so a refresh or a second browser shows the same run. The
view rules
(which run is shown, what Stop acts on, when Resume is offered) are in run_view.py.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

import gradio as gr
import yaml

from security import AdminRequired, inert

from .config import TrainConfig, field_help
from .diagnostics import report, suggest_v2
from .loop_ui import build_loop_section
from .run_view import (
    NOTHING_RUNNING,
    checkpoint_choices,
    config_yaml,
    live_state,
    load_config_yaml,
    promote_checkpoint,
    resume_offered,
    shown_run,
    stop_result,
)
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
                preset = gr.Dropdown(
                    PRESET_NAMES,
                    value="cpu-demo",
                    label="Preset",
                    info="qwen3-8b-qlora = the seed's recipe; cpu-demo = embedded model, minutes on a CPU",
                )
                dataset = gr.Dropdown(
                    choices=[],
                    value="",
                    label="Dataset (exported in the Data tab)",
                    allow_custom_value=True,
                    info=field_help("dataset"),
                )
                # Field info is the TrainConfig field's help metadata: the same text as `python -m training.train
                # --help`.
                with gr.Row():
                    rank = gr.Number(label="rank", precision=0, elem_id="train-rank", info=field_help("rank"))
                    alpha = gr.Number(label="alpha", precision=0, info=field_help("alpha"))
                    lr = gr.Number(label="learning rate", info=field_help("learning_rate"))
                with gr.Row():
                    epochs = gr.Number(label="epochs", info=field_help("epochs"))
                    max_steps = gr.Number(
                        label="max steps (-1 = epochs)",
                        precision=0,
                        elem_id="train-max-steps",
                        info=field_help("max_steps"),
                    )
                    mb = gr.Number(label="micro-batch", precision=0, info=field_help("micro_batch_size"))
                with gr.Row():
                    run_name = gr.Textbox(
                        label="run name (empty = generated)", elem_id="train-run-name", info=field_help("run_name")
                    )
                    gpus = gr.Textbox(label="GPUs (e.g. 0,1)", info=field_help("gpus"))
                with gr.Row():
                    preview_btn = gr.Button("Preview config")
                    start_btn = gr.Button("Start run", variant="primary", elem_id="train-start")
                with gr.Row():
                    save_yaml_btn = gr.Button("Save config as YAML", size="sm", elem_id="train-save-yaml")
                    load_yaml_btn = gr.UploadButton(
                        "Load config YAML",
                        file_types=[".yaml", ".yml"],
                        type="filepath",
                        size="sm",
                        elem_id="train-load-yaml",
                    )
                yaml_file = gr.File(label="config.yaml", interactive=False, visible=False, elem_id="train-yaml-file")
            with gr.Column(scale=2):
                config_view = gr.Code(label="Resolved config", language="yaml", elem_id="train-config")
        gr.Markdown("### Live run")
        with gr.Row():
            run_pick = gr.Dropdown(choices=[], label="Run", scale=3, elem_id="train-run")
            stop_btn = gr.Button("Stop", variant="stop", scale=1, elem_id="train-stop")
            resume_btn = gr.Button("Resume", scale=1, visible=False, elem_id="train-resume")
            refresh_btn = gr.Button("Refresh", scale=1)
        progress = gr.HTML("", elem_id="train-progress")
        tracking = gr.Markdown("", elem_id="train-tracking")  # W&B link, or the offline folder + `wandb sync`
        curve = gr.Plot(label="Loss curves")
        log_tail = gr.Textbox(label="Log (last lines)", lines=8, interactive=False, elem_id="train-log")
        gr.Markdown("### Diagnostics and v2")
        diag = gr.Markdown("", elem_id="train-diag")
        v2_view = gr.Code(label="Suggested v2 config", language="yaml")
        v2_btn = gr.Button("Train v2 with these changes", elem_id="train-v2")
        with gr.Accordion("Use a checkpoint as the adapter", open=False):
            with gr.Row():
                ckpt_pick = gr.Dropdown(choices=[], label="Checkpoint of this run", scale=2, elem_id="train-ckpt")
                ckpt_name = gr.Textbox(label="Adapter name (empty = run-stepN)", scale=2, elem_id="train-ckpt-name")
                ckpt_btn = gr.Button("Use as adapter", scale=1, elem_id="train-ckpt-go")
        loop_refresh, loop_in, loop_out = build_loop_section(ctx, rm, gate, preset, msg, run_pick)
        gr.Markdown("### Run history")
        history = gr.Dataframe(headers=HISTORY_COLUMNS, interactive=False, wrap=True, elem_id="train-history")
        timer = gr.Timer(2.0, active=False)  # on while the tab is open; it does nothing for non-admins
        pinned = gr.State(None)  # a run the admin picked by hand; None = follow the running / newest run
        stopping = gr.State(None)  # the run Stop acts on, between "stopping…" and "gone"
        loaded = gr.State(None)  # a config loaded from YAML: the base for Start instead of the preset
        ds_loaded = gr.State(False)
        presets_shown = gr.State(False)  # the preset's numbers, filled once an admin is known (a login after opening)

    overrides = [rank, alpha, lr, epochs, max_steps, mb, run_name, gpus]
    keys = ["rank", "alpha", "learning_rate", "epochs", "max_steps", "micro_batch_size", "run_name", "gpus"]

    def _cfg(p, ds, vals, base: dict | None = None) -> TrainConfig:
        cfg = build_config(p, ds or "", dict(zip(keys, vals)))
        if base:  # a loaded YAML: its values, with the form's fields (which it filled) on top
            form = {k: v for k, v in cfg.to_dict().items() if k in keys + ["dataset"] and v not in (None, "")}
            cfg = TrainConfig.from_dict({**base, **form, **({"dataset": ds} if ds else {})})
        return cfg

    def ids_now() -> list[str]:
        return [r["run_id"] for r in rm.runs()]

    # Explicit parameters (no *args): Gradio injects gr.Request only into plainly declared parameters.
    def on_preview(p, ds, v1, v2, v3, v4, v5, v6, v7, v8, base, request: gr.Request):
        try:
            gate.require(request)
            cfg = _cfg(p, ds, [v1, v2, v3, v4, v5, v6, v7, v8], base)
        except (AdminRequired, ValueError) as exc:
            return f"⚠️ {inert(str(exc))}", gr.update()
        return "", config_yaml(cfg)

    def on_start(p, ds, v1, v2, v3, v4, v5, v6, v7, v8, base, request: gr.Request):
        try:
            gate.require(request)
            handle = rm.start(_cfg(p, ds, [v1, v2, v3, v4, v5, v6, v7, v8], base))
        except Exception as exc:  # AdminRequired, RunError (one run at a time), ValueError (bad config): one sentence
            return f"⚠️ {inert(str(exc))}", gr.update(), gr.update()
        return (
            f"Started **{inert(handle.run_id)}** (pid {handle.pid}); the live view follows it.",
            gr.update(choices=ids_now(), value=handle.run_id),
            None,
        )

    def on_poll(run_id, pin, ckpt, ds_done, request: gr.Request):
        if not gate.is_admin(request):
            return [gr.update()] * 10 + [ds_done, gr.update()]
        runs = rm.runs()
        ids = [r["run_id"] for r in runs]
        active = rm.active_run()
        ds_up = gr.update()
        if not ds_done:  # first admin tick (e.g. a login after a reload): fill the dataset list once
            ch = dataset_choices(ctx.settings.data_dir)
            ds_up, ds_done = gr.update(choices=ch, value=ch[0][1]), True
        run_id = shown_run(pin, active, run_id, ids)
        if not run_id:
            return [
                gr.update(choices=ids),
                "<div id='train-progress-text'>no runs yet</div>",
                None,
                "",
                gr.update(value=history_rows(runs)),
                "",
                gr.update(visible=False),
                gr.update(),
                gr.update(),
                ds_up,
                ds_done,
                "",
            ]
        st = rm.status(run_id, tail=30)
        shown = live_state(st.state, bool((rm.registry.get(run_id) or {}).get("stop_requested")))
        tail = st.log_tail + (f"\n\nERROR: {st.error}" if st.error else "")
        diag_md = ""
        if st.state in ("completed", "stopped") and st.history:
            cfg = _run_config(rm, run_id)
            findings, new = suggest_v2(cfg, st.history)
            diag_md = report(findings, new, cfg)
        elif st.state == "failed":
            diag_md = f"**Run failed:** {inert(st.error or 'see the log')}"
        ck = gr.update()
        if not st.active and not ckpt:
            ck = gr.update(choices=checkpoint_choices(st.run_dir), value=None)
        stopping_now = shown == "stopping…"
        stop_label = (
            gr.update(value="Stopping…", interactive=False)
            if stopping_now
            else gr.update(value="Stop", interactive=True)
        )
        return [
            gr.update(choices=ids, value=run_id),
            progress_html(dataclasses.replace(st, state=shown)),
            loss_figure(st.history),
            tail,
            gr.update(value=history_rows(runs)),
            diag_md,
            gr.update(visible=resume_offered(st.state, active)),
            ck,
            stop_label,
            ds_up,
            ds_done,
            tracking_markdown(read_tracking(st.run_dir)),
        ]

    def on_stop_begin(request: gr.Request):
        """Stop acts on the run that is running, whatever run is on screen; the message stays 'stopping…' until it is
        gone."""
        if not gate.is_admin(request):
            return "⚠️ Stopping a run needs an admin: log in first.", None, gr.update()
        active = rm.active_run()
        if not active:
            return NOTHING_RUNNING, None, gr.update()
        return (
            f"Stopping **{inert(active)}**… (it saves a checkpoint, then the process ends)",
            active,
            gr.update(value="Stopping…", interactive=False),
        )

    def on_stop_finish(target, request: gr.Request):
        if not target or not gate.is_admin(request):
            return gr.update(), gr.update(interactive=True)
        try:
            gate.require(request)
            st = rm.stop(target)
        except Exception as exc:
            return f"⚠️ {inert(str(exc))}", gr.update(value="Stop", interactive=True)
        return stop_result(inert(target), st.state, inert(st.error) if st.error else None), gr.update(
            value="Stop", interactive=True
        )

    def on_resume(run_id, request: gr.Request):
        try:
            gate.require(request)
            handle = rm.resume(run_id)
        except Exception as exc:
            return f"⚠️ {inert(str(exc))}", gr.update(), gr.update()
        return f"Resumed **{inert(handle.run_id)}** from its last checkpoint.", gr.update(value=handle.run_id), None

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
            return f"⚠️ {inert(str(exc))}", gr.update(), gr.update()
        return (
            f"Started v2 run **{inert(handle.run_id)}**; the live view follows it.",
            gr.update(choices=ids_now(), value=handle.run_id),
            None,
        )

    def on_save_yaml(p, ds, v1, v2, v3, v4, v5, v6, v7, v8, base, request: gr.Request):
        try:
            gate.require(request)
            cfg = _cfg(p, ds, [v1, v2, v3, v4, v5, v6, v7, v8], base)
        except (AdminRequired, ValueError) as exc:
            return f"⚠️ {inert(str(exc))}", gr.update(), gr.update()
        path = Path(tempfile.mkdtemp(prefix="train-config-")) / f"{cfg.run_name or 'run'}.yaml"
        path.write_text(config_yaml(cfg), encoding="utf-8")
        return (
            "Saved the config below as YAML: download it from the file box.",
            gr.update(visible=True, value=str(path)),
            config_yaml(cfg),
        )

    def on_load_yaml(path, request: gr.Request):
        keep = [gr.update()] * 9
        try:
            gate.require(request)
            cfg = load_config_yaml(Path(path).read_text(encoding="utf-8"))
        except (AdminRequired, ValueError, OSError, UnicodeDecodeError) as exc:
            return [f"⚠️ {inert(Path(str(path)).name)}: {inert(str(exc))}", gr.update(), gr.update()] + keep
        c = cfg.to_dict()
        form = [
            c["rank"],
            c["alpha"],
            c["learning_rate"],
            c["epochs"],
            c["max_steps"],
            c["micro_batch_size"],
            c["run_name"],
            ",".join(str(g) for g in c["gpus"] or []),
        ]
        return (
            [
                f"Loaded **{inert(Path(str(path)).name)}**: Start uses it (the form shows its main values).",
                c,
                config_yaml(cfg),
            ]
            + form
            + [gr.update(value=c.get("dataset") or "") if c.get("dataset") else gr.update()]
        )

    def on_promote(run_id, ckpt, name, request: gr.Request):
        try:
            gate.require(request)
            if not run_id or not ckpt:
                raise ValueError("Pick a run and one of its checkpoints first.")
            row = rm.registry.get(run_id) or {}
            step = Path(ckpt).name.rsplit("-", 1)[-1]
            dest = promote_checkpoint(
                ckpt,
                ctx.settings.adapters_dir,
                (name or "").strip() or f"{run_id}-step{step}",
                final_adapter=row.get("adapter_path"),
            )
        except Exception as exc:
            return f"⚠️ {inert(str(exc))}"
        return (
            f"Adapter **{inert(dest.name)}** is ready: pick *LoRA: {inert(dest.name)}* in Generate (Refresh adapter "
            "list); "
            "the Arena uses it from the next battle."
        )

    def preset_values(p, request: gr.Request):
        """The form shows the preset's own values, so an untouched field keeps the preset's setting."""
        if not gate.is_admin(request):
            return [gr.update()] * 7
        c = build_config(p, "", {}).to_dict()
        return [c["rank"], c["alpha"], c["learning_rate"], c["epochs"], c["max_steps"], c["micro_batch_size"], None]

    def on_tab(request: gr.Request):
        if not gate.is_admin(request):
            return (
                gr.update(choices=[("log in as admin first", "")], value=""),
                (gate.how_to_enable() if not gate.enabled else "Log in as admin (top of the page) to use this tab."),
                gr.Timer(active=True),
                False,
            )  # ticking: a login shows the running run without re-opening the tab
        ch = dataset_choices(ctx.settings.data_dir)
        return gr.update(choices=ch, value=ch[0][1]), "", gr.Timer(active=True), True

    form_in = [preset, dataset] + overrides + [loaded]
    poll_in = [run_pick, pinned, ckpt_pick, ds_loaded]
    poll_out = [
        run_pick,
        progress,
        curve,
        log_tail,
        history,
        diag,
        resume_btn,
        ckpt_pick,
        stop_btn,
        dataset,
        ds_loaded,
        tracking,
    ]
    preview_btn.click(on_preview, form_in, [msg, config_view])
    start_btn.click(on_start, form_in, [msg, run_pick, pinned]).then(on_poll, poll_in, poll_out)
    stop_btn.click(on_stop_begin, None, [msg, stopping, stop_btn]).then(
        on_stop_finish, [stopping], [msg, stop_btn]
    ).then(on_poll, poll_in, poll_out)
    resume_btn.click(on_resume, [run_pick], [msg, run_pick, pinned]).then(on_poll, poll_in, poll_out)
    tab.select(loop_refresh, loop_in, loop_out)
    refresh_btn.click(on_poll, poll_in, poll_out)
    timer.tick(on_poll, poll_in, poll_out, show_progress="hidden")
    run_pick.input(lambda r: r, [run_pick], [pinned]).then(lambda: None, None, [ckpt_pick]).then(
        on_poll, poll_in, poll_out
    )
    run_pick.change(on_v2_preview, [run_pick], [v2_view])
    v2_btn.click(on_v2_start, [run_pick], [msg, run_pick, pinned]).then(on_poll, poll_in, poll_out)
    save_yaml_btn.click(on_save_yaml, form_in, [msg, yaml_file, config_view])
    load_yaml_btn.upload(on_load_yaml, [load_yaml_btn], [msg, loaded, config_view] + overrides + [dataset])
    ckpt_btn.click(on_promote, [run_pick, ckpt_pick, ckpt_name], [msg])
    tab.select(on_tab, None, [dataset, msg, timer, ds_loaded]).then(on_poll, poll_in, poll_out)
    numeric = overrides[:6] + [
        loaded
    ]  # run name and GPUs are the user's own, never reset by a preset; a preset drops a loaded YAML
    preset.input(preset_values, [preset], numeric)

    def on_tab_preset(p, base, r, request: gr.Request):
        """Fill the form from the preset only when it is empty: re-opening the tab must not wipe the admin's edits."""
        vals = preset_values(p, request) if not base and r in (None, "", 0) else [gr.update()] * 7
        return vals + [gate.is_admin(request)]

    def on_tick_preset(p, base, r, shown, request: gr.Request):
        """A login after the tab was opened: fill the form once, on the first admin tick (never over edits)."""
        if shown or not gate.is_admin(request):
            return [gr.update()] * 7 + [shown]
        return on_tab_preset(p, base, r, request)

    tab.select(on_tab_preset, [preset, loaded, rank], numeric + [presets_shown])
    timer.tick(on_tick_preset, [preset, loaded, rank, presets_shown], numeric + [presets_shown], show_progress="hidden")


def _run_config(rm, run_id: str) -> dict:
    row = rm.registry.get(run_id) or {}
    return json.loads(row.get("config_json") or "{}")
