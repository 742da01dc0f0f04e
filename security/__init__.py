"""Admin authentication, per-address limits, and rendering user text inert."""
from .auth import AdminGate, AdminRequired
from .client import client_address
from .ratelimit import RateLimited, VisitorLimits
from .sanitize import inert
from .store import SecurityDB

__all__ = ["AdminGate", "AdminRequired", "RateLimited", "SecurityDB", "VisitorLimits", "client_address", "inert"]
