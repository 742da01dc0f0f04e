"""Admin authentication, per-address limits, and the one escaper (user text rendered inert)."""

from .auth import AdminGate, AdminRequired
from .client import client_address
from .escape import html_text, inert, inert_line, own_markdown, prompt_data
from .ratelimit import RateLimited, VisitorLimits
from .store import SecurityDB

__all__ = [
    "AdminGate",
    "AdminRequired",
    "RateLimited",
    "SecurityDB",
    "VisitorLimits",
    "client_address",
    "inert",
    "inert_line",
    "html_text",
    "own_markdown",
    "prompt_data",
]
