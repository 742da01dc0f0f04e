"""Admin login panel (password locally, HF OAuth on Spaces). The check that matters is AdminGate.require in each handler."""
from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

from .auth import AdminRequired

if TYPE_CHECKING:  # type-only: security never imports the app layer at run time
    from context import AppContext


def build_admin_panel(ctx: AppContext) -> None:
    """Returns a gr.State-free login row; admin tabs call ctx.gate.require(request) themselves."""
    gate = ctx.gate
    with gr.Accordion("Admin", open=False, elem_id="admin-panel"):
        if gate.on_space:
            gr.LoginButton()
            gr.Markdown("Sign in with Hugging Face; admins are the users listed in ADMIN_USERS.")
        msg = gr.Markdown("" if gate.enabled else gate.how_to_enable(), elem_id="admin-msg")
        if gate.password:
            with gr.Row():
                pw = gr.Textbox(type="password", label="Admin password", scale=3, elem_id="admin-password")
                btn = gr.Button("Log in", scale=1, elem_id="admin-login")

            def do_login(p, request: gr.Request):
                try:
                    return gate.login(p, request), ""
                except AdminRequired as exc:
                    return f"⚠️ {exc}", ""

            btn.click(do_login, [pw], [msg, pw])
            pw.submit(do_login, [pw], [msg, pw])
    return msg
