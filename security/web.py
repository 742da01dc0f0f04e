"""HTTP side of admin login: POST /admin/login sets the session cookie, POST /admin/logout clears it.

A Gradio event cannot set a cookie, and the password should not travel through the event queue, so the Admin panel's
button calls these routes from the browser (security/ui.py). Only JSON bodies are accepted, which a cross-site HTML
form cannot send. The cookie is HttpOnly (page scripts cannot read it) and SameSite=Strict (no cross-site requests
carry it); it is Secure whenever the page was served over https.
"""

from __future__ import annotations

import json
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .auth import AdminGate, AdminRequired
from .client import client_address
from .session import COOKIE_NAME, token_from_request

log = logging.getLogger(__name__)
MAX_BODY = 4096


def _is_https(request: Request, proxy_hops: int) -> bool:
    if request.url.scheme == "https":
        return True
    proto = request.headers.get("x-forwarded-proto", "") if proxy_hops > 0 else ""
    return proto.split(",")[-1].strip().lower() == "https"


def admin_routes(gate: AdminGate, proxy_hops: int) -> list[Route]:
    async def login(request: Request) -> JSONResponse:
        if "application/json" not in request.headers.get("content-type", ""):
            return JSONResponse({"ok": False, "message": "Send the password as JSON."}, status_code=415)
        body = await request.body()
        try:
            password = json.loads(body[:MAX_BODY]).get("password") if len(body) <= MAX_BODY else None
        except (ValueError, AttributeError):
            password = None
        if not isinstance(password, str):
            return JSONResponse({"ok": False, "message": "Type the admin password."}, status_code=400)
        address = client_address(request, proxy_hops)
        try:
            token = gate.login(password, address)
        except AdminRequired as exc:
            log.info("admin login refused: %s", exc)  # the message only: never the password
            return JSONResponse({"ok": False, "message": str(exc)}, status_code=403)
        resp = JSONResponse({"ok": True, "message": "Logged in as admin."})
        resp.set_cookie(
            COOKIE_NAME,
            token,
            max_age=int(gate.session_ttl_s),
            path="/",
            httponly=True,
            samesite="strict",
            secure=_is_https(request, proxy_hops),
        )
        return resp

    async def logout(request: Request) -> JSONResponse:
        gate.sessions.revoke(token_from_request(request))
        resp = JSONResponse({"ok": True, "message": "Logged out."})
        resp.delete_cookie(
            COOKIE_NAME, path="/", httponly=True, samesite="strict", secure=_is_https(request, proxy_hops)
        )
        return resp

    return [Route("/admin/login", login, methods=["POST"]), Route("/admin/logout", logout, methods=["POST"])]
