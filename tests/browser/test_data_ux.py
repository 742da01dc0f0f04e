"""Data tab in a real browser: a CSV without timestamps is not dropped as "too early" (the funnel counts it), no ✅ when
nothing passes, file names instead of upload paths, a warning on a tiny export and a download for it."""

from __future__ import annotations

import csv

import pytest

from tests.support.app_server import browser_page, open_app, running_app
from tests.support.ux_helpers import login, require_chromium, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]
require_chromium()

TOPICS = ["coffee", "trains", "rust", "gardens", "chess", "jazz", "tides", "maps", "bread", "owls"]


def _csv(path, n: int, reply_len_ok: bool = True) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["tweet", "reply", "likes", "author_followers"])
        for i in range(n):
            t = f"{TOPICS[i % 10]} {i}"
            reply = (
                f"Honestly the best part about {t} is how it changes the whole week for everyone involved, number {i}."
                if reply_len_ok
                else "ok"
            )
            w.writerow([f"What do you all think about {t} these days?", reply, 20 + i, 2000 + i])


def _upload_and_import(page, path) -> None:
    page.locator("#data-files input[type=file]").set_input_files(str(path))
    page.locator("#data-files").get_by_text(path.name).first.wait_for(timeout=30_000)
    page.locator("#data-import").click()


def test_data_timestamps_names_and_small_export(tmp_path):
    no_ts, bad, short = tmp_path / "no_timestamps.csv", tmp_path / "wrong_columns.csv", tmp_path / "all_short.csv"
    _csv(no_ts, 40)
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    _csv(short, 3, reply_len_ok=False)
    with running_app(tmp_path) as url, browser_page() as page:
        open_app(page, url)
        login(page)
        page.get_by_role("tab", name="Data (admin)").click()
        page.wait_for_selector("#data-import", state="visible", timeout=30_000)
        page.get_by_text("Filter settings").click()
        page.locator("#data-semantic input").uncheck()  # exact rules only: fast and deterministic

        _upload_and_import(page, bad)
        wait_text(page, "#data-import-status", "wrong_columns.csv")
        err = page.locator("#data-import-status").inner_text()
        assert "/tmp/" not in err and "gradio/" not in err and "mapping=" not in err, err
        page.locator("#data-files button[aria-label='Clear']").first.click()

        _upload_and_import(page, short)
        wait_text(page, "#data-import-status", "passed the filters")
        status = page.locator("#data-import-status").inner_text()
        assert "✅" not in status and "0 of 3 pairs passed" in status, status
        page.locator("#data-files button[aria-label='Clear']").first.click()

        _upload_and_import(page, no_ts)
        wait_text(page, "#data-import-status", "40 of 40 pairs had no timestamp", timeout=120_000)
        status = page.locator("#data-import-status").inner_text()
        assert "✅" in status and "dropped" in status, status
        assert "40 passed" in status.replace("*", ""), status
        funnel = page.locator("#data-funnel-table").inner_text()
        assert "no timestamp (early-reply rule skipped)" in funnel
        assert "/tmp/" not in page.locator("#data-import-report").inner_text()

        page.get_by_text("also export pairs nobody reviewed").click()
        page.locator("#export-go").click()
        wait_text(page, "#export-status", "Exported")
        msg = page.locator("#export-status").inner_text()
        assert "Only 40 pairs" in msg and "800–1,200" in msg and "✅" not in msg, msg
        link = page.locator("#export-download a").first
        link.wait_for(timeout=30_000)
        assert (link.get_attribute("href") or "").endswith(".zip")
