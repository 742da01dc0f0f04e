"""Generate in a real browser: the seed field is empty (random) by default, a live n/280 counter, and a refused tweet
shows
its message once while earlier replies stay and the status does not claim "Done."."""

from __future__ import annotations

import pytest

from tests.support.app_server import browser_page, open_app, running_app
from tests.support.ux_helpers import require_chromium, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]
require_chromium()


def test_generate_seed_counter_and_refusal_keeps_replies(tmp_path):
    with running_app(tmp_path) as url, browser_page() as page:
        open_app(page, url)
        page.get_by_text("Sampling (Qwen3 card defaults)").click()
        assert page.locator("#gen-seed input, #gen-seed textarea").first.input_value() == ""  # empty = random, not 0

        box = page.locator("#gen-tweet textarea")
        box.fill("Hot take: meetings should be emails.")
        wait_text(page, "#gen-counter", "36/280")
        page.locator("#gen-go").click()
        page.wait_for_function(
            "() => document.querySelector('#gen-status')?.innerText.includes('Done')", timeout=240_000
        )
        replies = [page.locator(f"#gen-reply-{i} textarea").input_value() for i in range(2)]
        assert all(r.strip() for r in replies)

        box.fill("y" * 300)
        wait_text(page, "#gen-counter", "300/280 characters — 20 too many")
        page.locator("#gen-go").click()
        wait_text(page, "#gen-status", "A tweet is at most 280 characters")
        status = page.locator("#gen-status").inner_text()
        assert "Done" not in status
        assert (
            page.get_by_text("A tweet is at most 280 characters").count() == 1
        )  # once: no toast, no per-output copies
        assert [page.locator(f"#gen-reply-{i} textarea").input_value() for i in range(2)] == replies  # nothing wiped
        assert page.locator(".error").count() == 0  # no red "Error" pills over the outputs
