"""The one boolean parser for settings: context.Settings reads the app's environment with it, and the command lines
of other processes (which cannot import the app layer) read their own with it, so "yes" means the same everywhere."""

from __future__ import annotations

__all__ = ["env_flag"]

_TRUE = {"1", "true", "yes", "on"}


def env_flag(value: str | None, default: bool = False) -> bool:
    """1 / true / yes / on (any case) are true, anything else set is false; unset or blank is ``default``."""
    return default if value is None or not value.strip() else value.strip().lower() in _TRUE
