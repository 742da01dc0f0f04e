"""Loopback probe: the attacks of issue 12 re-run against a live app (SmolLM2 on CPU, 16-token replies).

Bounded: a handful of generations, a few dozen HTTP calls, one app start. What must hold: no admin handler answers
without the server-issued cookie; a client-chosen session_hash or X-Forwarded-For buys nothing; per-address limits
on Generate, battle starts and votes; one sentence for broken Unicode and no traceback in the log; security
headers; upload cap; the public page does not say whether a judge key is set.
"""

from __future__ import annotations

import json
import secrets

import httpx
import pytest

from common.text import INVALID_UNICODE_MESSAGE
from tests.support.probe_support import (
    ADMIN_PW,
    PROBE_ENV,
    SECRET,
    GradioHTTP,
    admin_dependencies,
    generate_status,
    harmless,
    plant_secrets,
    refused,
    running_app,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("probe")
    plant_secrets(tmp / "data")
    with running_app(tmp, extra_env=PROBE_ENV) as url:
        yield url, tmp


def _login(url: str, password: str, headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{url}/admin/login", json={"password": password}, headers=headers or {}, timeout=30)


def test_security_headers_on_page_api_and_files(app):
    url, _ = app
    for path in ("/", "/config", "/gradio_api/info"):
        r = httpx.get(url + path, timeout=30)
        assert r.headers.get("content-security-policy") == "frame-ancestors 'self'", path
        assert r.headers.get("x-content-type-options") == "nosniff", path


def test_upload_size_is_capped(app):
    url, _ = app
    big = httpx.post(f"{url}/gradio_api/upload", files={"files": ("big.jsonl", b"x" * (2 << 20))}, timeout=60)
    assert big.status_code == 413
    small = httpx.post(f"{url}/gradio_api/upload", files={"files": ("small.jsonl", b"{}\n")}, timeout=60)
    assert small.status_code == 200


def test_every_admin_handler_refuses_without_the_cookie(app):
    url, tmp = app
    with GradioHTTP(url) as g:
        deps = admin_dependencies(g)
        assert len(deps) >= 30  # Data, Training, Evaluate, vote export
        leaks = []
        for d in deps:
            res = g.call(d["id"], g.default_inputs(d), session_hash=secrets.token_hex(8))
            if not refused(res):
                leaks.append((d.get("api_name"), [json.dumps(v)[:150] for v in res.data if not harmless(v)]))
    assert not leaks, leaks
    assert not list((tmp / "data").glob("runs/*")) and not list((tmp / "data").glob("exports/*"))


def test_admin_is_the_cookie_not_the_session_hash(app):
    url, _ = app
    r = _login(url, ADMIN_PW)
    assert r.status_code == 200 and r.json()["ok"]
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    token = r.cookies["reply_arena_admin"]
    shared_hash = "victim-session-hash"
    with GradioHTTP(url, cookies={"reply_arena_admin": token}) as admin, GradioHTTP(url) as thief:
        ledger = next(d for d in admin_dependencies(admin) if d.get("api_name") == "on_ledger")
        ok = admin.call(ledger["id"], [], session_hash=shared_hash)
        assert ok.success and ok.data[0] == ""  # admin: no refusal message
        data_open = next(d for d in admin_dependencies(admin) if d.get("api_name") == "on_open_1")
        assert SECRET in json.dumps(
            admin.call(data_open["id"], admin.default_inputs(data_open)).data
        )  # the planted data is reachable
        stolen = thief.call(ledger["id"], [], session_hash=shared_hash)  # before: same hash = admin
        assert refused(stolen) and "admin" in stolen.data[0]
        forged = GradioHTTP(url, cookies={"reply_arena_admin": token[:-2] + "xx"})
        assert refused(forged.call(ledger["id"], [], session_hash=shared_hash))
        forged.close()
        out = httpx.post(f"{url}/admin/logout", cookies={"reply_arena_admin": token}, timeout=30)
        assert out.status_code == 200
        assert refused(admin.call(ledger["id"], [], session_hash=shared_hash))  # the token is dead server-side


def test_login_wants_json_so_a_cross_site_form_cannot_post_it(app):
    url, _ = app
    r = httpx.post(f"{url}/admin/login", data={"password": ADMIN_PW}, timeout=30)
    assert r.status_code == 415 and "set-cookie" not in r.headers


def test_broken_unicode_is_one_sentence_without_traceback(app):
    url, tmp = app
    before = (tmp / "app.log").read_text().count("Traceback")
    with GradioHTTP(url) as g:
        gen = g.dependency_for("gen-go")
        data = g.default_inputs(gen)
        data[0] = "coffee \ud800 or tea"
        res = g.call(gen["id"], data)
        assert generate_status(res) == f"⚠️ {INVALID_UNICODE_MESSAGE}"
        start = next(
            d for d in g.config["dependencies"] if d.get("trigger_after") == g.dependency_for("arena-start")["id"]
        )
        res = g.call(start["id"], ["rain \udfff today?"])
        assert not res.success and res.error == INVALID_UNICODE_MESSAGE  # before: an empty error
    assert (tmp / "app.log").read_text().count("Traceback") == before


def test_public_page_does_not_reveal_the_judge_key(app):
    url, _ = app
    page = httpx.get(f"{url}/config", timeout=30).text
    assert "ANTHROPIC_API_KEY" not in page and "sk-probe" not in page
    with GradioHTTP(url) as g:
        judge = g.by_elem_id("eval-judge")
        change = next(
            d
            for d in g.config["dependencies"]
            if [judge["id"], "change"] in d["targets"] and d.get("api_name") == "on_judge_change"
        )
        res = g.call(change["id"], ["anthropic"])
        assert res.success and "ANTHROPIC" not in json.dumps(res.data)


def test_rotating_forwarded_for_does_not_dodge_limits(app):
    """GENERATE_PER_MINUTE=3, BATTLES_PER_MINUTE=4, VOTES_PER_MINUTE=2 (PROBE_ENV); XFF changes on every request."""
    url, _ = app
    xff = iter(f"203.0.113.{i}" for i in range(1, 200))
    with GradioHTTP(url) as g:
        gen = g.dependency_for("gen-go")
        data = g.default_inputs(gen)
        data[0], data[1] = "Coffee or tea?", ["base"]
        results = [g.call(gen["id"], data, headers={"X-Forwarded-For": next(xff)}) for _ in range(4)]
        statuses = [generate_status(r) for r in results]  # a refusal is the status line, replies kept
        assert [s.startswith("⚠️") for s in statuses] == [False, False, False, True]
        assert "Too many generations from your address" in statuses[3]

        start = next(
            d for d in g.config["dependencies"] if d.get("trigger_after") == g.dependency_for("arena-start")["id"]
        )
        vote = g.dependency_for("vote-a")
        voted = []
        for i in range(4):
            sh = secrets.token_hex(8)  # a fresh session per battle: only the address ties them together
            b = g.call(start["id"], ["Is it going to rain?"], session_hash=sh, headers={"X-Forwarded-For": next(xff)})
            assert b.success, b.error
            v = g.call(vote["id"], [None], session_hash=sh, headers={"X-Forwarded-For": next(xff)})
            voted.append(v.data[1])
        assert [m.startswith("You voted") for m in voted] == [True, True, False, False]
        assert "voting too fast" in voted[2]
        fifth = g.call(start["id"], ["Is it going to rain?"], headers={"X-Forwarded-For": next(xff)})
        assert not fifth.success and "Too many battles from your address" in fifth.error


def test_login_guessing_is_throttled_per_address(app):
    """Last in the module: it locks 127.0.0.1 out of admin login for ten minutes."""
    url, _ = app
    xff = iter(f"198.51.100.{i}" for i in range(1, 50))
    codes = [_login(url, "guess", {"X-Forwarded-For": next(xff)}).status_code for _ in range(5)]
    assert codes == [403] * 5
    r = _login(url, ADMIN_PW, {"X-Forwarded-For": next(xff)})  # right password, "new" address: still the same peer
    assert r.status_code == 403 and "Too many wrong passwords from your address" in r.json()["message"]
