"""Admin sessions: a random token the server issues at login, sent back only in an HttpOnly, SameSite=Strict cookie.

Replaces keying admin rights on Gradio's `session_hash`, which the client chooses and which travels in URLs.
Only sha256(token) is stored, so the database file holds no usable credential; sessions expire after `ttl_s`.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from http.cookies import SimpleCookie

from .store import SecurityDB

COOKIE_NAME = "reply_arena_admin"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class AdminSessions:
    def __init__(self, db: SecurityDB, ttl_s: float = 12 * 3600) -> None:
        self.db = db
        self.ttl_s = ttl_s

    def issue(self, who: str = "admin", now: float | None = None) -> str:
        now = time.time() if now is None else now
        token = secrets.token_urlsafe(32)
        with self.db.lock:
            self.db.conn.execute("DELETE FROM admin_sessions WHERE expires <= ?", (now,))
            self.db.conn.execute(
                "INSERT INTO admin_sessions VALUES (?, ?, ?, ?)", (_digest(token), who, now, now + self.ttl_s)
            )
        return token

    def valid(self, token: str | None, now: float | None = None) -> bool:
        if not token or len(token) > 200:
            return False
        now = time.time() if now is None else now
        with self.db.lock:
            row = self.db.conn.execute(
                "SELECT expires FROM admin_sessions WHERE token_sha256 = ?", (_digest(token),)
            ).fetchone()
        return row is not None and row[0] > now

    def revoke(self, token: str | None) -> None:
        if token:
            with self.db.lock:
                self.db.conn.execute("DELETE FROM admin_sessions WHERE token_sha256 = ?", (_digest(token),))


def token_from_request(request) -> str | None:
    """The admin cookie of a gr.Request / Starlette request (or anything with .cookies or a Cookie header)."""
    if request is None:
        return None
    cookies = getattr(request, "cookies", None)
    if isinstance(cookies, dict) or hasattr(cookies, "get"):
        try:
            value = cookies.get(COOKIE_NAME)
        except Exception:
            value = None
        if value:
            return value
    headers = getattr(request, "headers", None) or {}
    raw = headers.get("cookie") if hasattr(headers, "get") else None
    if not raw:
        return None
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return None
    morsel = jar.get(COOKIE_NAME)
    return morsel.value if morsel else None
