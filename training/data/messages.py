"""The Data tab's sentences, UI-free so they are unit-tested: the import headline, file names instead of upload paths,
and the export-size warning."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from training.data.funnel import Funnel

PLANNED_PAIRS = (800, 1200)  # the seed's plan for a useful LoRA dataset
# Gradio keeps uploads at <tmp>/gradio/<long hex hash>/<file name>: the hash folder means nothing to a person.
_UPLOAD_DIR = re.compile(r"(?:[^\s'\"`]*/)?gradio/[0-9a-f]{16,}/")


def show_names(text: str, sources: Iterable[str | os.PathLike[str]] = ()) -> str:
    """``text`` with every known source path, and any Gradio upload folder, shortened to the file's name."""
    for src in sorted((str(s) for s in sources), key=len, reverse=True):
        text = text.replace(src, Path(src).name)
    return _UPLOAD_DIR.sub("", text)


def import_headline(funnel: Funnel, summary: str) -> str:
    """✅ only when pairs passed; a note when timestamps were missing (that rule was skipped, not failed)."""
    note = ""
    if funnel.no_timestamp:
        note = (
            f" {funnel.no_timestamp} of {funnel.n_in} pairs had no timestamp, so the early-reply rule was skipped for "
            "them "
            "(unknown is not early)."
        )
    if funnel.n_out == 0:
        return (
            f"⚠️ 0 of {funnel.n_in} pairs passed the filters: nothing to review. The funnel below shows which rule "
            f"dropped them; loosen that filter and import again.{note}"
        )
    return f"✅ {summary}{note}"


def export_size_warning(n_total: int, n_train: int, n_eval: int) -> str:
    """One sentence when an export is too small to train a useful adapter (or has no eval split); '' otherwise."""
    lo, hi = PLANNED_PAIRS
    if n_total < lo:
        return (
            f"⚠️ Only {n_total} pairs ({n_train} train / {n_eval} eval): a useful LoRA needs about {lo:,}–{hi:,}. "
            "Fine for a smoke test; import and review more before a real run."
        )
    if n_eval == 0:
        return "⚠️ The eval split is empty: raise the eval fraction so the run can measure itself."
    return ""
