"""Real browser: the Training tab's vote loop shows the clean pairs available since the last DPO run, previews the next
DPO config, refuses a run with too few pairs (count and minimum), and the refusal needs an admin first."""

from __future__ import annotations

import json

import pytest

from arena.store import VoteStore
from tests.support.app_server import browser_page, open_app, running_app
from tests.support.preference_votes import synthetic_votes
from tests.support.ux_helpers import require_chromium, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

require_chromium()


def test_loop_section_counts_previews_and_refuses(tmp_path):
    with VoteStore(tmp_path / "data") as store:
        synthetic_votes(store, n_voters=1)  # 24 clean pairs: below the default minimum of 50
    (tmp_path / "adapters" / "sft-v1").mkdir(parents=True)
    (tmp_path / "adapters" / "sft-v1" / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "x", "r": 8})
    )
    with running_app(tmp_path) as url, browser_page() as page:
        open_app(page, url)
        page.get_by_role("tab", name="Training (admin)").click()
        # the tab's own opening message first: clicking before it lands lets it overwrite the refusal (a race)
        wait_text(page, "#train-msg", "Log in as admin")
        page.locator("#loop-start").click()
        wait_text(page, "#train-msg", "needs an admin")
        page.locator("#admin-panel").get_by_text("Admin", exact=True).first.click() if not page.locator(
            "#admin-password"
        ).is_visible() else None
        page.locator("#admin-password input").fill("test-admin-pw")
        page.locator("#admin-login").click()
        wait_text(page, "#admin-msg", "Logged in as admin")
        page.get_by_role("tab", name="Generate").click()
        page.get_by_role("tab", name="Training (admin)").click()
        page.get_by_role("button", name="Count pairs").click()
        wait_text(page, "#loop-info", "24 clean preference pairs available (no DPO run yet)")
        wait_text(page, "#loop-info", "Starts from: base → SFT sft-v1")
        wait_text(page, "#loop-preview", "learning_rate: 5.0e-05")  # the DPO overrides on the preset
        wait_text(page, "#loop-start", "Train DPO v2 from votes")
        page.locator("#loop-start").click()
        wait_text(page, "#train-msg", "Only 2")  # the train split's count (eval tweets held out), then the minimum
        wait_text(page, "#train-msg", "a DPO run needs at least 50")
        page.screenshot(path=str(tmp_path / "loop.png"), full_page=True)
    runs = tmp_path / "data" / "runs"
    assert not runs.exists() or not [
        p for p in runs.iterdir() if p.is_dir()
    ]  # no run folder: refused before the runner made one
    assert not any((tmp_path / "data" / "preferences").iterdir())  # the refused run's dataset was removed
