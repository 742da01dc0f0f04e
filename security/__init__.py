"""Admin authentication and rendering user text inert."""
from .auth import AdminGate, AdminRequired
from .sanitize import inert

__all__ = ["AdminGate", "AdminRequired", "inert"]
