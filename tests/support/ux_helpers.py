"""Small shared steps for the browser tests (the app and Chromium come from tests/support/app_server.py)."""

from __future__ import annotations

import os

import pytest

from tests.support.app_server import chromium_available


def require_chromium() -> None:
    if not chromium_available():
        if os.environ.get("CI") or os.geteuid() == 0:
            raise RuntimeError("Chromium is missing at /usr/bin/chromium; `make test` installs it with apt.")
        pytest.skip("Chromium not installed", allow_module_level=True)


def wait_text(page, selector: str, needle: str, timeout: int = 60_000) -> None:
    page.wait_for_function(
        "([s, n]) => (document.querySelector(s)?.innerText || '').includes(n)", arg=[selector, needle], timeout=timeout
    )


def text_matches(page, selector: str, pattern: str, timeout: float = 60_000) -> None:
    """Wait until the element's text matches the regular expression `pattern`."""
    page.wait_for_function(
        "([sel, pat]) => new RegExp(pat).test(document.querySelector(sel)?.innerText || '')",
        arg=[selector, pattern],
        timeout=timeout,
    )


def open_data_tab(page) -> None:
    page.get_by_role("tab", name="Data (admin)").click()
    page.wait_for_selector("#data-import", state="visible", timeout=30_000)


def login(page, password: str = "test-admin-pw") -> None:
    if not page.locator("#admin-password").is_visible():
        page.locator("#admin-panel").get_by_text("Admin", exact=True).first.click()
    page.locator("#admin-password input").fill(password)
    page.locator("#admin-login").click()
    wait_text(page, "#admin-msg", "Logged in as admin")


def dataframe_rows(page, selector: str, n_cols: int) -> list[list[str]]:
    """Body rows of a Gradio Dataframe from its rendered text (header block, a blank gap, then one cell per line)."""
    text = page.locator(selector).inner_text()
    body = text.split("\n\n\n", 1)[1] if "\n\n\n" in text else ""
    cells = [c.strip() for c in body.split("\n")] if body.strip() else []
    return [cells[i : i + n_cols] for i in range(0, len(cells), n_cols)]
