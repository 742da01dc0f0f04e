"""The one escaper: user text goes into Markdown/HTML components, prompts and reports; it renders as text, never markup.

Four contexts, one module:
* ``inert`` -- a gr.Markdown component: HTML-escape, then backslash-neutralise Markdown, keep line breaks.
* ``inert_line`` -- one cell/line of Markdown (tables, lists): as ``inert`` with newlines folded to spaces.
* ``html_text`` -- an HTML report or attribute value: HTML-escape (quotes too).
* ``own_markdown`` -- our own text (adapter names, notes) in a Markdown table: no HTML, no cell breaks, readable.
* ``prompt_data`` -- user text inside a judge prompt's delimiter tags: only &, < and > so it cannot close a tag.
* ``hide_temp_paths`` -- error messages name the uploaded file, never the server's temp folders.
"""

from __future__ import annotations

import html
import re
import tempfile
from typing import Any, Iterable

__all__ = ["inert", "inert_line", "html_text", "own_markdown", "prompt_data", "hide_temp_paths"]

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-!|>~$])")  # $: Gradio renders $...$ as LaTeX


def _text(x: Any) -> str:
    return "" if x is None else str(x)


def inert(text: Any) -> str:
    """HTML-escape, then neutralize Markdown syntax, so `<script>`, links and images from users stay plain text."""
    escaped = html.escape(_text(text), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", escaped).replace("\n", "  \n")


def inert_line(text: Any) -> str:
    """``inert`` on one line: line breaks become spaces (a Markdown table cell or list item)."""
    return inert(_text(text).replace("\r", " ").replace("\n", " "))


def html_text(x: Any) -> str:
    """Text or attribute value in HTML."""
    return html.escape(_text(x), quote=True)


def own_markdown(x: Any) -> str:
    """Our own text for Markdown (may quote adapter names): no HTML, no table breaks, otherwise readable."""
    return html.escape(_text(x), quote=False).replace("|", "\\|").replace("\n", " ")


def prompt_data(text: Any) -> str:
    """Escape &, < and > so user text cannot open or close a delimiter tag in a prompt."""
    return html.escape(_text(text), quote=False)


def _temp_roots(temp_dirs: Iterable[str]) -> list[str]:
    roots = {tempfile.gettempdir(), *(str(d) for d in temp_dirs)}
    return sorted((r.rstrip("/\\") for r in roots if r), key=len, reverse=True)


def hide_temp_paths(text: str, temp_dirs: Iterable[str] = ()) -> str:
    """Replace server temp paths (where uploads land, e.g. /tmp/gradio/<hash>/export.json) by the file name alone.

    ``temp_dirs``: upload folders besides the system temp dir (the app passes GRADIO_TEMP_DIR from its Settings).
    Error messages name the file the user gave; the server's directory layout is none of their business.
    """
    for root in _temp_roots(temp_dirs):
        text = re.sub(re.escape(root) + r"[/\\](?:[^\s'\"`:,;)]*[/\\])?([^\s'\"`:,;/\\)]*)", r"\1", text)
    return text
