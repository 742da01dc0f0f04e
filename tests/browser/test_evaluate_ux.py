"""Evaluate in a real browser: the duration is estimated before starting, the local judge says plainly it is unavailable
on the embedded model (instead of minutes of unparsed answers), the empty ranking is hidden, and no "Phase 0/4" or
"(seed 5.3)" jargon is on screen."""

from __future__ import annotations

import pytest

from tests.support.app_server import browser_page, open_app, running_app
from tests.support.ux_helpers import login, require_chromium, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]
require_chromium()


def test_evaluate_estimate_local_judge_and_plain_words(tmp_path):
    with running_app(tmp_path, extra_env={"ANTHROPIC_API_KEY": ""}) as url, browser_page() as page:
        open_app(page, url)
        login(page)
        page.get_by_role("tab", name="Evaluate (admin)").click()
        wait_text(page, "#eval-estimate", "Estimated time:")
        est = page.locator("#eval-estimate").inner_text()
        assert "20 tweets" in est and "judge calls with the local judge on CPU" in est, est

        page.locator("#eval-limit input").fill("5")
        page.locator("#eval-limit input").press("Tab")
        wait_text(page, "#eval-estimate", "5 tweets")

        wait_text(page, "#eval-key-status", "unavailable on this model")
        page.locator("#eval-run").click()
        wait_text(page, "#eval-verdicts", "The local judge is unavailable on this model", timeout=30_000)
        assert not page.locator("#eval-ranking").is_visible()  # a table of "–" is not shown

        page.get_by_text("How the verdicts are decided").last.click()
        wait_text(page, "#eval-help", "Is fine-tuning worth it?", timeout=10_000)
        text = page.locator("body").inner_text()
        assert "Phase 0" not in text and "Phase 4" not in text and "seed 5.3" not in text
        assert "Is fine-tuning worth it?" in text and "Did the adapter work?" in text
