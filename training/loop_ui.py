"""Training tab section: "N clean preference pairs available since the last DPO run" and "Train DPO v(n+1) from votes".

A thin view over training/loop.py; every handler checks the admin credential itself.
"""

from __future__ import annotations

import gradio as gr
import yaml

from security import AdminRequired, inert

from .loop import describe, loop_state, next_config, start_next
from .service import build_config


def build_loop_section(ctx, rm, gate, preset: gr.Dropdown, msg: gr.Markdown, run_pick: gr.Dropdown):
    """Adds the section inside the open Training tab; returns (its refresh handler, the handler's inputs, outputs) so
    the
    tab can refresh it when opened."""
    data_dir, adapters_dir = ctx.settings.data_dir, rm.adapters_dir
    gr.Markdown("### Train on the Arena's votes (DPO)")
    info = gr.Markdown("", elem_id="loop-info")
    with gr.Row():
        parent = gr.Dropdown(
            choices=[], value=None, label="Start from adapter (its copy is the DPO reference)", elem_id="loop-parent"
        )
        refresh = gr.Button("Count pairs", scale=0)
    preview = gr.Code(label="DPO config preview", language="yaml", elem_id="loop-preview")
    button = gr.Button("Train DPO v2 from votes", variant="primary", elem_id="loop-start")

    def _view(p, parent_name):
        state = loop_state(data_dir, adapters_dir)
        pick = parent_name if parent_name in state.parents else (state.parents[0] if state.parents else "")
        cfg = next_config(build_config(p, "", {}), state, pick, adapters_dir, dataset="<built from the votes on start>")
        return state, pick, cfg

    def on_refresh(p, parent_name, request: gr.Request):
        if not gate.is_admin(request):
            return gr.update(), gr.update(), gr.update(), gr.update()
        try:
            state, pick, cfg = _view(p, parent_name)
        except ValueError as exc:
            return f"⚠️ {inert(str(exc))}", gr.update(), gr.update(), gr.update()
        head, *rest = describe(state, pick, adapters_dir)
        text = "\n\n".join([f"**{inert(head)}**", *(inert(x) for x in rest)])
        return (
            text,
            gr.update(choices=state.parents, value=pick or None),
            yaml.safe_dump(cfg.to_dict(), sort_keys=False),
            gr.update(value=f"Train DPO v{state.version} from votes"),
        )

    def on_start(p, parent_name, request: gr.Request):
        try:
            gate.require(request)
            handle, cfg, prov = start_next(rm, data_dir, build_config(p, "", {}), parent_name or "")
        except AdminRequired as exc:
            return f"⚠️ {inert(str(exc))}", gr.update()
        except Exception as exc:  # ValueError (too few pairs, foreign parent), RunError (a run is active): one sentence
            return f"⚠️ {inert(str(exc))}", gr.update()
        return (
            f"Started **{inert(handle.run_id)}** on {prov['n_train']} pairs from {len(prov['vote_ids'])} votes.",
            gr.update(choices=[r["run_id"] for r in rm.runs()], value=handle.run_id),
        )

    outs = [info, parent, preview, button]
    refresh.click(on_refresh, [preset, parent], outs)
    parent.change(on_refresh, [preset, parent], outs)
    button.click(on_start, [preset, parent], [msg, run_pick])
    return on_refresh, [preset, parent], outs
