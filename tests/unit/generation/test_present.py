"""The text around a reply: retrieved examples render inert in the UI panel."""

from __future__ import annotations

from generation.present import format_examples_markdown
from retrieval import Retrieved


def test_markdown_escapes_user_text() -> None:
    ex = Retrieved(
        "<script>alert('x')</script> **bold** [link](javascript:alert(1))",
        "<img src=x onerror=alert(1)> # heading\nsecond line",
        1234,
        0.87,
        "p1",
    )
    md = format_examples_markdown([ex])
    assert "<script" not in md and "<img" not in md and "&lt;script&gt;" in md
    assert "**bold**" not in md and "](javascript" not in md and "\n# " not in md
    assert "1,234 likes" in md and "0.87" in md
    assert format_examples_markdown([]).strip()
