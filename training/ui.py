"""Data and Training tabs (admin). Each lives in its own module; every handler checks admin server-side."""
from __future__ import annotations

from .data_ui import build_data_tab
from .train_ui import build_training_tab

__all__ = ["build_data_tab", "build_training_tab"]
