"""Real-browser test of the Data tab's collect panel and the System tab: the app (a subprocess) collects from a local
server that speaks the X API v2 (tests/x_api_server.py, reached through X_API_BASE_URL), the file lands in the import
panel and imports; the min_faves check; the admin-only System report."""

from __future__ import annotations

import pytest

from tests.support.app_server import browser_page, open_app, running_app
from tests.support.ux_helpers import login as _login
from tests.support.ux_helpers import open_data_tab as _open_data_tab
from tests.support.ux_helpers import require_chromium
from tests.support.ux_helpers import text_matches as _text_has
from tests.support.x_api_server import XApiServer, expected_pairs, make_conversation

pytestmark = [pytest.mark.browser, pytest.mark.slow]

require_chromium()


def test_collect_import_min_faves_and_system_tab(tmp_path):
    conv = make_conversation(100, 250)
    with (
        XApiServer({"100": conv}, token="browser-token") as srv,
        running_app(tmp_path, extra_env={"X_API_BASE_URL": srv.url, "X_BEARER_TOKEN": "browser-token"}) as url,
        browser_page() as page,
    ):
        open_app(page, url)
        _open_data_tab(page)
        page.locator("#collect-panel").get_by_text("0 · Collect from the X API or Apify").first.click()
        page.locator("#collect-conv textarea").fill("100")
        cap = page.locator("#collect-cap input")
        cap.fill("300")
        page.locator("#collect-name").locator("textarea, input").first.fill("conv100")

        # not logged in: refused before any request reaches X
        page.locator("#collect-go").click()
        _text_has(page, "#collect-status", "needs an admin")
        assert srv.requests == []

        _login(page)
        cap.fill("0")
        page.locator("#collect-go").click()
        _text_has(page, "#collect-status", "must be at least 10")
        assert srv.requests == []

        cap.fill("300")
        page.locator("#collect-go").click()
        _text_has(page, "#collect-status", r"Read 250 posts in 3 pages", timeout=120_000)
        assert all(r["params"]["query"] == "conversation_id:100" for r in srv.requests)  # min_faves 0 = no operator
        status = page.locator("#collect-status").inner_text()
        assert f"{expected_pairs(conv)} pairs" in status and "pairs per 100 posts" in status
        out = tmp_path / "data" / "collect" / "conv100.jsonl"
        assert out.is_file() and "browser-token" not in out.read_text()
        page.wait_for_function(
            "(p) => document.querySelector('#data-server-path textarea, #data-server-path input')?.value === p",
            arg=str(out),
            timeout=30_000,
        )
        page.locator("#data-import").click()
        _text_has(page, "#data-import-status", rf"Imported {expected_pairs(conv)} pairs", timeout=240_000)
        assert "x_api_v2" in page.locator("#data-format").inner_text()

        page.locator("#collect-min-faves input").fill("10")
        page.locator("#collect-mf").click()
        n_with = sum(1 for r in conv["replies"] if r["public_metrics"]["like_count"] >= 10)
        _text_has(
            page, "#collect-status", rf"min_faves:10 reduced the posts read from 250 to {n_with}", timeout=120_000
        )

        page.get_by_role("tab", name="System (admin)").click()
        page.locator("#system-check").click()
        _text_has(page, "#system-report", "CUDA GPU", timeout=120_000)
        report = page.locator("#system-report").inner_text()
        assert "bitsandbytes" in report and "W&B" in report and "disk" in report
