"""Real-browser tests: Debian's Chromium driven by Playwright against the real app on the embedded model."""

from __future__ import annotations

import re

import pytest

from tests.support.app_server import browser_page, open_app, running_app
from tests.support.ux_helpers import require_chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]

require_chromium()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app")
    with running_app(tmp) as url:
        yield url


def test_generate_base_and_rag_in_browser(app_url, tmp_path):
    with browser_page() as page:
        open_app(page, app_url)
        page.locator("#gen-tweet textarea").fill("Coffee before code or code before coffee? Asking for a friend.")
        page.locator("#gen-go").click()
        page.wait_for_function(
            "() => document.querySelector('#gen-status')?.innerText.includes('Done')", timeout=240_000
        )
        # the condition the assertions read: both stats lines final (the status and the stats are separate components)
        page.wait_for_function(
            "() => [0, 1].every(i => /tok\\/s/.test(document.querySelector('#gen-stats-' + i)?.innerText || ''))",
            timeout=30_000,
        )
        replies = [page.locator(f"#gen-reply-{i} textarea").input_value() for i in range(2)]
        stats = [page.locator(f"#gen-stats-{i}").inner_text() for i in range(2)]
        page.screenshot(path=str(tmp_path / "generate.png"), full_page=True)
    assert all(r.strip() for r in replies), replies
    assert all(re.search(r"tok/s", s) for s in stats), stats
    assert (tmp_path / "generate.png").stat().st_size > 10_000


def test_generate_refuses_overlong_tweet(app_url):
    with browser_page() as page:
        open_app(page, app_url)
        page.locator("#gen-tweet textarea").fill("x" * 300)
        page.locator("#gen-go").click()
        page.get_by_text("A tweet is at most 280 characters").first.wait_for(timeout=60_000)


def _vote_count(page) -> int:
    txt = page.locator("#lb-counts").inner_text()
    m = re.search(r"(\d+)\s+votes in the store", txt)
    return int(m.group(1)) if m else -1


def test_arena_battle_vote_reveal_and_leaderboard(app_url, tmp_path):
    with browser_page() as page:
        open_app(page, app_url)
        page.get_by_role("tab", name="Leaderboard").click()
        page.wait_for_function(
            "() => /votes in the store/.test(document.querySelector('#lb-counts')?.innerText || '')", timeout=60_000
        )
        before = _vote_count(page)

        page.get_by_role("tab", name="Arena").click()
        page.locator("#arena-tweet textarea").fill("Pineapple on pizza: yes or no?")
        page.locator("#arena-start").click()
        page.wait_for_function(
            "() => !document.querySelector('#vote-a')?.disabled && document.querySelector('#arena-a "
            "textarea')?.value.length > 0",
            timeout=240_000,
        )
        a = page.locator("#arena-a textarea").input_value()
        b = page.locator("#arena-b textarea").input_value()
        assert a.strip() and b.strip()
        assert "was **" not in page.locator("#arena-reveal").inner_text()  # names hidden before the vote
        page.locator("#vote-a").click()
        page.wait_for_function(
            "() => /A was/.test(document.querySelector('#arena-reveal')?.innerText || '')", timeout=60_000
        )
        reveal = page.locator("#arena-reveal").inner_text()
        assert re.search(r"A was (Base|RAG few-shot|LoRA: \S+)", reveal), reveal
        assert page.locator("#vote-b").is_disabled()  # buttons lock after the vote
        page.screenshot(path=str(tmp_path / "arena.png"), full_page=True)

        page.get_by_role("tab", name="Leaderboard").click()
        page.wait_for_function(
            f"() => /{before + 1} votes in the store/.test(document.querySelector('#lb-counts')?.innerText || '')",
            timeout=60_000,
        )
        assert _vote_count(page) == before + 1
