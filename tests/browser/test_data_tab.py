"""Real-browser test of the Data tab: admin refusal, import + funnel, review (buttons and keyboard), resume after a
reload, export. Debian's Chromium driven by Playwright against the real app (ADMIN_PASSWORD=test-admin-pw)."""

from __future__ import annotations

import re

import pytest

from tests.support.app_server import ROOT, browser_page, open_app, running_app
from tests.support.ux_helpers import login as _login
from tests.support.ux_helpers import open_data_tab as _open_data_tab
from tests.support.ux_helpers import require_chromium
from tests.support.ux_helpers import text_matches as _text_has

pytestmark = [pytest.mark.browser, pytest.mark.slow]

require_chromium()

SAMPLE = ROOT / "assets" / "sample_pairs.jsonl"
EDITED = "Specific and short: this edit was saved by the browser test."


def _position(page) -> str:
    return page.locator("#review-position").inner_text()


def test_data_tab_import_review_resume_export(tmp_path):
    with running_app(tmp_path) as url, browser_page() as page:
        open_app(page, url)
        _open_data_tab(page)
        path_box = page.locator("#data-server-path").locator("textarea, input").first

        # 1. not logged in: refused server-side, nothing stored
        _text_has(page, "#data-admin-msg", "needs an admin")
        path_box.fill(str(SAMPLE))
        page.locator("#data-import").click()
        _text_has(page, "#data-import-status", "needs an admin")
        assert not (tmp_path / "data" / "datasets").exists()

        # 2. log in, bad path → clear error; then import the sample through the server-path box
        _login(page)
        path_box.fill(str(tmp_path / "missing.jsonl"))
        page.locator("#data-import").click()
        _text_has(page, "#data-import-status", "does not exist on the server")
        path_box.fill(str(SAMPLE))
        page.locator("#data-import").click()
        _text_has(page, "#data-import-status", r"Imported 260 pairs → 198 passed", timeout=240_000)
        assert "sample" in page.locator("#data-format").inner_text()
        table = page.locator("#data-funnel-table").inner_text()
        assert re.search(r"\bin\s+260\b", table) and re.search(r"\bout\s+198\b", table), table
        assert page.locator("#data-funnel-plot img, #data-funnel-plot canvas, #data-funnel-plot svg").count() >= 1

        # 3. review: keep (button), discard (keyboard d), edit (keyboard e + save)
        _text_has(page, "#review-position", r"Pair 1 of 198 \(pending\)")
        assert page.locator("#review-tweet textarea").input_value().strip()
        first_reply = page.locator("#review-reply textarea").input_value()
        assert first_reply.strip() and "likes" in page.locator("#review-stats").inner_text()
        assert "likes (≥ 5)" in page.locator("#review-why").inner_text()
        page.locator("#review-keep").click()
        _text_has(page, "#review-status", "^Kept ")
        _text_has(page, "#review-position", r"Pair 1 of 197 \(pending\)")
        assert page.locator("#review-reply textarea").input_value() != first_reply

        page.locator("#review-position").click()  # focus on the page, not on a text box
        page.keyboard.press("d")
        _text_has(page, "#review-status", "^Discarded ")
        _text_has(page, "#review-position", r"of 196 \(pending\)")

        page.locator("#review-position").click()
        page.keyboard.press("e")
        edit = page.locator("#review-edit textarea")
        assert page.evaluate("() => document.activeElement === document.querySelector('#review-edit textarea')")
        edit.fill(EDITED)
        page.locator("#review-save-edit").click()
        _text_has(page, "#review-status", "Saved the edit")
        _text_has(page, "#review-position", "status edited")
        assert edit.input_value() == EDITED
        _text_has(page, "#review-progress", r"3 / 198 reviewed")
        progress = page.locator("#review-progress").inner_text()
        assert "kept 1" in progress and "edited 1" in progress and "discarded 1" in progress

        # the edited text is what the store holds (filter "edited" shows it)
        page.locator("#review-filter").get_by_text("edited", exact=True).click()
        _text_has(page, "#review-position", r"Pair 1 of 1 \(edited\)")
        assert page.locator("#review-edit textarea").input_value() == EDITED

        # 4. reload: the admin cookie survives it; after Log out the server refuses; the review resumes from SQLite
        page.reload(wait_until="domcontentloaded")
        page.wait_for_selector("#gen-tweet textarea", timeout=120_000)
        if not page.locator("#admin-logout").is_visible():
            page.locator("#admin-panel").get_by_text("Admin", exact=True).first.click()
        page.locator("#admin-logout").click()
        _text_has(page, "#admin-msg", "[Ll]ogged out")
        _open_data_tab(page)
        page.locator("#review-keep").click()  # no longer admin: refused server-side
        _text_has(page, "#review-status", "needs an admin")
        _login(page)
        page.locator("#review-refresh").click()
        _text_has(page, "#review-progress", r"3 / 198 reviewed")
        _text_has(page, "#data-format", r"funnel 260 in → 198 out")
        _text_has(page, "#review-position", r"Pair 1 of 195 \(pending\)")

        # 5. export → listed
        page.locator("#export-name").locator("textarea, input").first.fill("sample-v1")
        page.locator("#export-go").click()
        _text_has(page, "#export-status", r"Exported sample-v1: 2 pairs", timeout=120_000)
        _text_has(page, "#export-list", "sample-v1")
        page.screenshot(path=str(tmp_path / "data_tab.png"), full_page=True)

        # 6. a malformed upload: clear error naming the line, nothing stored
        bad = tmp_path / "broken.jsonl"
        bad.write_text(
            SAMPLE.read_text(encoding="utf-8").splitlines()[0] + '\n{"pair_id": "x", "tweet": \n', encoding="utf-8"
        )
        page.locator("#data-files input[type=file]").set_input_files(str(bad))
        page.locator("#data-files").get_by_text("broken.jsonl").first.wait_for(timeout=30_000)
        page.locator("#data-dataset-name").locator("textarea, input").first.fill("broken")
        page.locator("#data-import").click()
        _text_has(page, "#data-import-status", r"broken\.jsonl.*line 2")

    assert (tmp_path / "data" / "datasets" / "sample-v1" / "export.json").is_file()
    assert (tmp_path / "data_tab.png").stat().st_size > 10_000
    from training.data.review_store import ReviewStore

    assert [d["name"] for d in ReviewStore(tmp_path / "data").datasets()] == ["sample_pairs"]
