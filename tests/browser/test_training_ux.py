"""Training tab in a real browser: a login shows the tab without re-opening it; Stop with nothing running says so; Stop
acts on the running run even when another is on screen, says "stopping…" until the process is gone, and offers Resume;
Start makes the view follow the new run; a checkpoint becomes an adapter; the config round-trips through YAML."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.support.app_server import browser_page, open_app, running_app
from tests.support.ux_helpers import login, require_chromium, wait_text
from training.config import resolve
from training.run_view import config_yaml

pytestmark = [pytest.mark.browser, pytest.mark.slow]
require_chromium()


@pytest.fixture
def no_leftover_runs(tmp_path):
    """Training children live in their own process groups: end any this test started, even when it fails."""
    yield
    for status in (tmp_path / "data" / "runs").glob("*/status.json"):
        pid = (json.loads(status.read_text()) or {}).get("pid")
        if pid:
            try:
                os.killpg(int(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _start(page, name: str, steps: int) -> None:
    page.locator("#train-max-steps input").fill(str(steps))
    page.locator("#train-run-name").locator("input, textarea").first.fill(name)
    page.locator("#train-start").click()
    wait_text(page, "#train-msg", f"Started {name}")


def _shown_run(page) -> str:
    return page.locator("#train-run input").input_value()


def test_training_follow_stop_resume_yaml_and_checkpoint(tmp_path, no_leftover_runs):
    yaml_in = tmp_path / "mine.yaml"
    with running_app(tmp_path) as url, browser_page() as page:
        open_app(page, url)
        page.get_by_role("tab", name="Training (admin)").click()
        wait_text(page, "#train-msg", "Log in as admin")
        login(page)  # no re-selecting the tab: the next tick shows it
        wait_text(page, "#train-progress-text", "no runs yet", timeout=30_000)
        page.wait_for_function(
            "() => !['', '0'].includes(document.querySelector('#train-max-steps input')?.value ?? '')", timeout=30_000
        )

        page.locator("#train-stop").click()
        wait_text(page, "#train-msg", "Nothing is running.")

        # YAML out and back in
        page.locator("#train-rank input").fill("4")
        page.locator("#train-save-yaml").click()
        wait_text(page, "#train-msg", "Saved the config")
        assert page.locator("#train-yaml-file a").first.get_attribute("href").endswith(".yaml")
        yaml_in.write_text(config_yaml(resolve("cpu-demo", {"rank": 6, "alpha": 12})))
        with page.expect_file_chooser() as chooser:
            page.locator("#train-load-yaml").click()
        chooser.value.set_files(str(yaml_in))
        wait_text(page, "#train-msg", "Loaded mine.yaml")
        assert page.locator("#train-rank input").input_value() == "6"
        assert "rank: 6" in page.locator("#train-config").inner_text()

        _start(page, "first", 400)
        wait_text(page, "#train-progress-text", "running · step", timeout=400_000)
        page.wait_for_function(
            "() => /step [1-9]/.test(document.querySelector('#train-progress-text')?.innerText || '')", timeout=400_000
        )
        page.locator("#train-stop").click()
        wait_text(page, "#train-msg", "Stopping first…", timeout=10_000)
        wait_text(page, "#train-msg", "Stopped first", timeout=200_000)
        assert "Resume" in page.locator("#train-msg").inner_text()
        page.locator("#train-resume").wait_for(state="visible", timeout=30_000)

        # a checkpoint of the stopped run becomes an adapter
        page.get_by_text("Use a checkpoint as the adapter").click()
        page.locator("#train-ckpt input").click()
        page.get_by_role("option", name="step").first.click()
        page.locator("#train-ckpt-go").click()
        wait_text(page, "#train-msg", "is ready", timeout=30_000)
        assert any(p.name.startswith("first-step") for p in (tmp_path / "adapters").iterdir())

        # Resume, then Start another while the first is on screen: refused (one at a time); stop it, then a new run is
        # followed
        page.locator("#train-resume").click()
        wait_text(page, "#train-msg", "Resumed first", timeout=30_000)
        wait_text(page, "#train-progress-text", "running", timeout=400_000)
        page.locator("#train-stop").click()
        wait_text(page, "#train-msg", "Stopped first", timeout=200_000)

        _start(page, "second", 400)
        page.wait_for_function("() => document.querySelector('#train-run input')?.value === 'second'", timeout=30_000)
        page.locator("#train-run input").click()  # pick the old run by hand: Stop still acts on the running one
        page.get_by_role("option", name="first", exact=True).click()
        wait_text(page, "#train-progress-text", "stopped", timeout=30_000)  # the picked run is shown and stays
        page.wait_for_timeout(5000)
        assert _shown_run(page) == "first"
        assert "stopped" in page.locator("#train-progress-text").inner_text()
        page.locator("#train-stop").click()
        wait_text(page, "#train-msg", "Stopping second…", timeout=10_000)
        wait_text(page, "#train-msg", "Stopped second", timeout=200_000)
