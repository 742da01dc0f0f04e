"""User text goes into Markdown/HTML components; escape it so it renders as text, never as markup or script."""
from __future__ import annotations

import html
import re

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-!|>~])")


def inert(text: str | None) -> str:
    """HTML-escape, then neutralize Markdown syntax, so `<script>`, links and images from users stay plain text."""
    escaped = html.escape(text or "", quote=False)
    return _MD_SPECIAL.sub(r"\\\1", escaped).replace("\n", "  \n")
