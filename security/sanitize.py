"""User text goes into Markdown/HTML components; escape it so it renders as text, never as markup or script."""
from __future__ import annotations

import html
import os
import re
import tempfile

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-!|>~])")


def inert(text: str | None) -> str:
    """HTML-escape, then neutralize Markdown syntax, so `<script>`, links and images from users stay plain text."""
    escaped = html.escape(text or "", quote=False)
    return _MD_SPECIAL.sub(r"\\\1", escaped).replace("\n", "  \n")


def _temp_roots() -> list[str]:
    roots = {tempfile.gettempdir(), os.environ.get("GRADIO_TEMP_DIR", "")}
    return sorted((r.rstrip("/\\") for r in roots if r), key=len, reverse=True)


def hide_temp_paths(text: str) -> str:
    """Replace server temp paths (where uploads land, e.g. /tmp/gradio/<hash>/export.json) by the file name alone.

    Error messages name the file the user gave; the server's directory layout is none of their business.
    """
    for root in _temp_roots():
        text = re.sub(re.escape(root) + r"[/\\](?:[^\s'\"`:,;)]*[/\\])?([^\s'\"`:,;/\\)]*)", r"\1", text)
    return text
