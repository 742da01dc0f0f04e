"""Server-side admin checks. Public visitors may generate and vote; Data / Training / Evaluate need an admin.

Locally an admin logs in with ADMIN_PASSWORD and gets a server-issued token in an HttpOnly, SameSite=Strict cookie
(security/session.py, routes in security/web.py). On a Hugging Face Space (SPACE_ID set) admins may also sign in with
HF OAuth and must be on the ADMIN_USERS allow-list. Every admin handler calls `require(request)`: the gate reads the
cookie and the OAuth session from the request itself, so no handler can forget to pass the credential, and hiding
tabs is never what protects them.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass, field

from .ratelimit import PersistentRateLimiter, RateLimited, RateWindow
from .session import AdminSessions, token_from_request
from .store import SecurityDB


class AdminRequired(PermissionError):
    """Raised by admin handlers for non-admin callers; its message is shown in the UI."""


def oauth_username(request) -> str | None:
    """The HF username of a signed-in OAuth session, read the way Gradio builds gr.OAuthProfile.

    Gradio's SessionMiddleware puts `oauth_info` in the ASGI scope's session; an expired entry counts as signed out.
    """
    if request is None:
        return None
    underlying = getattr(request, "request", None) or request
    scope = getattr(underlying, "scope", None)
    session = scope.get("session", {}) if isinstance(scope, dict) else (getattr(underlying, "session", None) or {})
    info = session.get("oauth_info") if hasattr(session, "get") else None
    if not isinstance(info, dict):
        return None
    expires = info.get("expires_at")
    if expires is not None and expires < time.time():
        return None
    user = info.get("userinfo") or {}
    return (user.get("preferred_username") or "").lower() or None


@dataclass
class AdminGate:
    # Filled from ADMIN_PASSWORD / ADMIN_USERS / SYSTEM+SPACE_ID by context.Settings.from_env (the one env reader).
    password: str | None = None
    allowed_users: set[str] = field(default_factory=set)
    on_space: bool = False
    session_ttl_s: float = 12 * 3600  # an admin session lasts a working day
    max_failures: int = 5  # wrong passwords per address per 10 minutes
    max_failures_global: int = 30  # wrong passwords from all addresses per 10 minutes (rotating addresses)
    db: SecurityDB | None = None  # None: an in-memory database (tests, tools); the app passes the data dir's file
    sessions: AdminSessions = field(init=False)
    _failures: PersistentRateLimiter = field(init=False)

    def __post_init__(self) -> None:
        if self.db is None:
            self.db = SecurityDB(None)
        self.sessions = AdminSessions(self.db, self.session_ttl_s)
        self._failures = PersistentRateLimiter(self.db, "login-failure", [RateWindow(600.0, self.max_failures, "")])
        self._global_failures = PersistentRateLimiter(
            self.db, "login-failure-all", [RateWindow(600.0, self.max_failures_global, "")]
        )

    @property
    def enabled(self) -> bool:
        return bool(self.password) or (self.on_space and bool(self.allowed_users))

    def how_to_enable(self) -> str:
        if self.on_space:
            return (
                "Admin tabs are off: set the ADMIN_USERS secret (comma-separated Hugging Face usernames) and sign in "
                "with Hugging Face."
            )
        return "Admin tabs are off: start the app with ADMIN_PASSWORD set, then log in here."

    def login(self, password: str, address: str) -> str:
        """Check the password; on success return a new session token for the cookie. AdminRequired otherwise."""
        if not self.password:
            raise AdminRequired(self.how_to_enable())
        now = time.time()
        if self._global_failures.check(["all"], now) is not None:
            raise AdminRequired("Too many wrong admin passwords recently; logins are paused for 10 minutes.")
        if self._failures.check([address], now) is not None:
            raise AdminRequired("Too many wrong passwords from your address; wait 10 minutes.")
        if not isinstance(password, str) or not hmac.compare_digest(
            password.encode("utf-8", "surrogatepass"), self.password.encode("utf-8", "surrogatepass")
        ):
            self._failures.record([address], now)
            self._global_failures.record(["all"], now)
            raise AdminRequired("Wrong admin password.")
        return self.sessions.issue("password", now)

    def logout(self, request) -> None:
        self.sessions.revoke(token_from_request(request))

    def is_admin(self, request=None, profile=None) -> bool:
        if self.on_space and self.allowed_users:
            explicit = (getattr(profile, "username", None) or "").lower() if profile is not None else ""
            if (explicit or oauth_username(request) or "") in self.allowed_users:
                return True
        return self.sessions.valid(token_from_request(request))

    def require(self, request=None, profile=None) -> None:
        if not self.is_admin(request, profile):
            raise AdminRequired(
                "This needs an admin: log in on the Admin panel first." if self.enabled else self.how_to_enable()
            )


__all__ = ["AdminGate", "AdminRequired", "RateLimited", "oauth_username"]
