"""Admin authentication and the one escaper (user text rendered inert)."""
from .auth import AdminGate, AdminRequired
from .escape import html_text, inert, inert_line, own_markdown, prompt_data

__all__ = ["AdminGate", "AdminRequired", "inert", "inert_line", "html_text", "own_markdown", "prompt_data"]
