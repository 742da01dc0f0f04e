"""Real browser: the Training tab refuses visitors, runs a short cpu-demo training for an admin with live progress,
and the finished adapter shows up in the Generate tab without a restart."""

from __future__ import annotations

import pytest

from tests.support.app_server import browser_page, open_app, running_app
from tests.support.ux_helpers import login as _login
from tests.support.ux_helpers import require_chromium
from tests.support.ux_helpers import wait_text as _wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

require_chromium()


def test_training_tab_runs_and_adapter_appears(tmp_path):
    with running_app(tmp_path) as url, browser_page() as page:
        open_app(page, url)
        page.get_by_role("tab", name="Training (admin)").click()
        # the tab's own opening message first: clicking before it lands lets it overwrite the refusal (a race)
        _wait_text(page, "#train-msg", "Log in as admin")
        page.locator("#train-start").click()
        _wait_text(page, "#train-msg", "needs an admin")  # refused on the server, nothing started
        assert not (tmp_path / "data" / "runs").exists() or not any((tmp_path / "data" / "runs").glob("ui-run*"))

        _login(page)
        page.get_by_role("tab", name="Generate").click()
        page.get_by_role("tab", name="Training (admin)").click()
        # the form is filled with the preset's values when the tab opens; edit after that lands
        page.wait_for_function(
            "() => !['', '0'].includes(document.querySelector('#train-max-steps input')?.value ?? '')", timeout=30_000
        )
        page.locator("#train-max-steps input").fill("4")
        page.locator("#train-run-name").locator("input, textarea").first.fill("ui-run")
        page.locator("#train-start").click()
        _wait_text(page, "#train-msg", "Started")
        _wait_text(page, "#train-progress-text", "completed", timeout=400_000)
        page.screenshot(path=str(tmp_path / "training.png"), full_page=True)
        assert (tmp_path / "adapters" / "ui-run" / "adapter_config.json").is_file()
        # W&B offline (WANDB_MODE=offline in the tests): the tab names the local run folder and the sync command
        _wait_text(page, "#train-tracking", "wandb sync", timeout=30_000)
        tracking = page.locator("#train-tracking").inner_text()
        runs = list((tmp_path / "data" / "runs").glob("ui-run*/wandb/offline-run-*"))
        assert len(runs) == 1 and f"wandb sync {runs[0]}" in tracking

        page.get_by_role("tab", name="Generate").click()
        page.get_by_role("button", name="Refresh adapter list").click()
        page.locator("#gen-variants").get_by_text("LoRA: ui-run").wait_for(timeout=30_000)
