"""Real browser: the Admin panel's login gets an HttpOnly cookie page scripts cannot read, the admin tabs answer,
and Log out makes the server refuse again."""

from __future__ import annotations

import pytest

from tests.support.app_server import browser_page, open_app, running_app  # noqa: E402
from tests.support.ux_helpers import require_chromium, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]

require_chromium()


def test_login_cookie_is_httponly_and_logout_revokes(tmp_path):
    with running_app(tmp_path) as url, browser_page() as page:
        open_app(page, url)
        page.locator("#admin-panel").get_by_text("Admin", exact=True).first.click()
        page.locator("#admin-password input").fill("wrong")
        page.locator("#admin-login").click()
        wait_text(page, "#admin-msg", "Wrong admin password")

        page.locator("#admin-password input").fill("test-admin-pw")
        page.locator("#admin-login").click()
        wait_text(page, "#admin-msg", "Logged in as admin")
        assert page.locator("#admin-password input").input_value() == ""  # the field is cleared
        cookie = next(c for c in page.context.cookies() if c["name"] == "reply_arena_admin")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert "reply_arena_admin" not in page.evaluate("document.cookie")  # a script on the page cannot steal it

        page.get_by_role("tab", name="Evaluate (admin)").click()
        page.wait_for_timeout(1500)
        assert "needs an admin" not in page.locator("#eval-admin-msg").inner_text()
        assert (
            "ANTHROPIC_API_KEY" in page.locator("#eval-key-status").inner_text()
            or "judge" in page.locator("#eval-key-status").inner_text().lower()
        )

        page.locator("#admin-logout").click()
        wait_text(page, "#admin-msg", "Logged out")
        page.get_by_role("tab", name="Data (admin)").click()
        wait_text(page, "#data-admin-msg", "needs an admin")
