"""Test-wide settings: everything runs offline. Shared helpers live in tests/support/ (app server, Messages API
server, tiny Qwen3, training-run helpers); the project is imported as installed (`pip install -e .`) or from the
repository root (`python -m pytest`), never by patching sys.path."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("WANDB_MODE", "offline")
