"""Admin panel: password login/logout through the cookie routes in security/web.py, HF sign-in on Spaces.

The check that matters is AdminGate.require(request) in each admin handler; this panel only obtains the credential.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

# Runs in the browser: the password goes straight to /admin/login (never through the event queue) and the server's
# Set-Cookie lands in the browser's jar, where page scripts cannot read it (HttpOnly).
_CALL = """
async (%s) => {
  const base = window.location.href.split(/[?#]/)[0].replace(/[^/]*$/, "");
  let msg;
  try {
    const r = await fetch(base + "%s", {method: "POST", credentials: "same-origin",
                                        headers: {"Content-Type": "application/json"}, body: JSON.stringify(%s)});
    const j = await r.json().catch(() => ({}));
    msg = j.ok ? j.message : "⚠️ " + (j.message || ("The server refused (HTTP " + r.status + ")."));
  } catch (e) { msg = "⚠️ The server could not be reached; try again."; }
  return [msg, ""];
}
"""
LOGIN_JS = _CALL % ("p", "admin/login", "{password: p}")
LOGOUT_JS = _CALL % ("", "admin/logout", "{}")

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
                out = gr.Button("Log out", scale=1, elem_id="admin-logout")
            btn.click(None, [pw], [msg, pw], js=LOGIN_JS)
            pw.submit(None, [pw], [msg, pw], js=LOGIN_JS)
            out.click(None, None, [msg, pw], js=LOGOUT_JS)
    return msg
