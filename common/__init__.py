"""Small helpers shared by several packages (kept tiny on purpose)."""
