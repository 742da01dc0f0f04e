"""Arena in a real browser: the reveal names each reply in plain words, votes by keyboard, one "Next battle" button that
starts the next battle, and a refused (rate-limited) vote keeps the battle so the visitor can vote on it later."""

from __future__ import annotations

import pytest

from tests.support.app_server import browser_page, open_app, running_app
from tests.support.ux_helpers import require_chromium, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]
require_chromium()

READY = (
    "() => !document.querySelector('#vote-a')?.disabled"
    " && document.querySelector('#arena-a textarea')?.value.length > 0"
)


def test_arena_reveal_keys_next_and_refused_vote(tmp_path):
    with running_app(tmp_path, extra_env={"VOTES_PER_MINUTE": "1"}) as url, browser_page() as page:
        open_app(page, url)
        page.get_by_role("tab", name="Arena").click()
        page.locator("#arena-tweet textarea").fill("Tabs or spaces, final answer?")
        page.locator("#arena-start").click()
        page.wait_for_function(READY, timeout=240_000)
        page.locator("body").click(position={"x": 5, "y": 5})  # focus off the text field, as a visitor reading would be
        page.keyboard.press("a")  # "A is better" by keyboard
        wait_text(page, "#arena-reveal", "A was")
        names = {page.locator("#arena-name-a").inner_text().strip(), page.locator("#arena-name-b").inner_text().strip()}
        assert names == {"Base", "RAG few-shot"}, names  # friendly names under each reply, not "base"/"rag"
        assert "was **" not in page.locator("#arena-reveal").inner_text()
        assert page.locator("#arena-start").is_visible()

        # one button goes on: a new tweet is drawn and the battle starts without pressing Start
        first_tweet = page.locator("#arena-tweet textarea").input_value()
        page.keyboard.press("n")
        page.wait_for_function(READY, timeout=240_000)
        assert page.locator("#arena-tweet textarea").input_value().strip() not in ("", first_tweet)
        assert page.locator("#arena-name-a").inner_text().strip() == ""  # the names of the new battle stay hidden

        # a second vote within the minute is refused; the buttons come back and the battle is kept
        page.locator("body").click(position={"x": 5, "y": 5})
        page.keyboard.press("b")
        wait_text(page, "#arena-reveal", "vote again in a moment")
        page.wait_for_function("() => !document.querySelector('#vote-b')?.disabled", timeout=30_000)
        assert not page.locator("#arena-next").is_visible()
        page.locator(
            "#vote-tie"
        ).click()  # voting again on the same battle is refused for the rate, not "unknown battle"
        page.wait_for_function(
            "() => /vote again in a moment/.test(document.querySelector('#arena-reveal')?.innerText || '')"
            " && !document.querySelector('#vote-tie')?.disabled",
            timeout=30_000,
        )
        assert "unknown" not in page.locator("#arena-reveal").inner_text()
