"""Server-side admin checks. Public visitors may generate and vote; Data / Training / Evaluate need an admin.

Locally an admin logs in with ADMIN_PASSWORD; on a Hugging Face Space (SPACE_ID set) admins sign in with HF OAuth and
must be on the ADMIN_USERS allow-list. Every admin handler calls `require()` — hiding tabs alone protects nothing.
"""
from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass, field


class AdminRequired(PermissionError):
    """Raised by admin handlers for non-admin callers; its message is shown in the UI."""


@dataclass
class AdminGate:
    # Filled from ADMIN_PASSWORD / ADMIN_USERS / SPACE_ID by context.Settings.from_env (the one env reader).
    password: str | None = None
    allowed_users: set[str] = field(default_factory=set)
    on_space: bool = False
    session_ttl_s: float = 12 * 3600  # an admin session lasts a working day
    max_failures: int = 5  # per session per 10 minutes, to slow down password guessing
    _sessions: dict[str, float] = field(default_factory=dict)
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def enabled(self) -> bool:
        return bool(self.password) or (self.on_space and bool(self.allowed_users))

    def how_to_enable(self) -> str:
        if self.on_space:
            return "Admin tabs are off: set the ADMIN_USERS secret (comma-separated Hugging Face usernames) and sign in with Hugging Face."
        return "Admin tabs are off: start the app with ADMIN_PASSWORD set, then log in here."

    @staticmethod
    def _session_id(request) -> str | None:
        return getattr(request, "session_hash", None) if request is not None else None

    def login(self, password: str, request) -> str:
        """Check the password; on success mark this browser session as admin. Returns a message for the UI."""
        sid = self._session_id(request)
        if not self.password:
            raise AdminRequired(self.how_to_enable())
        if not sid:
            raise AdminRequired("No browser session; reload the page and try again.")
        now = time.time()
        with self._lock:
            recent = [t for t in self._failures.get(sid, []) if now - t < 600]
            if len(recent) >= self.max_failures:
                raise AdminRequired("Too many wrong passwords; wait 10 minutes.")
            if not hmac.compare_digest((password or "").encode(), self.password.encode()):
                self._failures[sid] = recent + [now]
                raise AdminRequired("Wrong admin password.")
            self._sessions[sid] = now + self.session_ttl_s
        return "Logged in as admin."

    def logout(self, request) -> None:
        with self._lock:
            self._sessions.pop(self._session_id(request) or "", None)

    def is_admin(self, request=None, profile=None) -> bool:
        if profile is not None and self.on_space:
            username = (getattr(profile, "username", None) or "").lower()
            if username and username in self.allowed_users:
                return True
        sid = self._session_id(request)
        with self._lock:
            exp = self._sessions.get(sid or "")
            return exp is not None and exp > time.time()

    def require(self, request=None, profile=None) -> None:
        if not self.is_admin(request, profile):
            raise AdminRequired("This needs an admin: log in on the Admin panel first." if self.enabled else self.how_to_enable())
