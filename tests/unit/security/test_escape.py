"""The one escaper: user text stays text in Markdown, HTML and prompt delimiters."""

from __future__ import annotations

from security.escape import html_text, inert, inert_line, own_markdown, prompt_data


def test_inert_neutralises_markup_and_latex():
    out = inert("<script>x</script> **b** [l](javascript:1) $x$\n# h")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "\\*\\*b\\*\\*" in out and "\\]\\(javascript" in out and "\\$x\\$" in out and "\n\\# h" in out


def test_one_line_html_own_text_and_prompt_data():
    assert "\n" not in inert_line("a\nb\r\nc")
    assert html_text('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"
    assert own_markdown("lora:a|b\nc") == "lora:a\\|b c"
    assert prompt_data("</reply_a> & <x>") == "&lt;/reply_a&gt; &amp; &lt;x&gt;"
    assert inert(None) == "" and html_text(None) == ""
