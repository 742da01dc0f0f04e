"""Across a restart: a battle issued before it is reported as expired (nothing stored), and the per-address limits
and the login throttle are still in force. The app runs behind one trusted proxy (--behind-proxy 1), so the
address is the X-Forwarded-For entry the proxy appended (the last one); what the client wrote before it is ignored.
"""

from __future__ import annotations

import secrets

import httpx
import pytest

from arena.battles import EXPIRED_MESSAGE
from arena.store import VoteStore
from tests.support.probe_support import ADMIN_PW, GradioHTTP, generate_status, running_app

pytestmark = pytest.mark.slow

# The daily window (not the per-minute one) so the limit cannot simply slide past during the restart.
ENV = {
    "REPLY_ARENA_MAX_NEW_TOKENS": "16",
    "GENERATE_PER_MINUTE": "10",
    "GENERATE_PER_DAY": "2",
    "BATTLES_PER_MINUTE": "5",
}
VISITOR = "198.51.100.7"  # what "the proxy" appends


def _xff(i: int) -> dict:
    return {"X-Forwarded-For": f"10.9.9.{i}, {VISITOR}"}  # the first entry is the client's own (rotating) claim


def _generate(g: GradioHTTP, i: int):
    dep = g.dependency_for("gen-go")
    data = g.default_inputs(dep)
    data[0], data[1] = "Coffee or tea?", ["base"]
    return g.call(dep["id"], data, headers=_xff(i))


def test_pending_battle_expires_and_limits_survive_restart(tmp_path):
    session = secrets.token_hex(8)
    with running_app(tmp_path, extra_env=ENV, args=["--behind-proxy", "1"]) as url:
        with GradioHTTP(url) as g:
            start = next(
                d for d in g.config["dependencies"] if d.get("trigger_after") == g.dependency_for("arena-start")["id"]
            )
            assert g.call(start["id"], ["Is it going to rain?"], session_hash=session, headers=_xff(0)).success
            results = [_generate(g, i) for i in range(1, 4)]
            statuses = [generate_status(r) for r in results]  # a refusal is the status line, replies kept
            assert [s.startswith("⚠️") for s in statuses] == [False, False, True]  # one proxy-seen address
            assert "reached today's limit of 2 generations" in statuses[2]
            other = g.call(
                g.dependency_for("gen-go")["id"],
                ["Coffee?", ["base"], *g.default_inputs(g.dependency_for("gen-go"))[2:]],
                headers={"X-Forwarded-For": "10.9.9.9, 192.0.2.44"},
            )
            assert other.success  # a different visitor behind the same proxy has its own budget
        # rotating addresses behind the proxy: never 5 from one, so only the global throttle can stop the guessing
        codes = [
            httpx.post(
                url + "/admin/login",
                json={"password": "guess"},
                headers={"X-Forwarded-For": f"192.0.2.{i}"},
                timeout=30,
            ).status_code
            for i in range(30)
        ]
        assert codes == [403] * 30
        r = httpx.post(
            url + "/admin/login", json={"password": ADMIN_PW}, headers={"X-Forwarded-For": "192.0.2.200"}, timeout=30
        )
        assert r.status_code == 403 and "paused" in r.json()["message"]

    with running_app(tmp_path, extra_env=ENV, args=["--behind-proxy", "1"]) as url:  # same data dir: a restart
        with GradioHTTP(url) as g:
            vote = g.dependency_for("vote-a")
            res = g.call(vote["id"], [None], session_hash=session, headers=_xff(5))
            assert res.success and res.data[1].replace("\\", "") == f"⚠️ {EXPIRED_MESSAGE}"
            limited = _generate(g, 6)
            assert "reached today's limit of 2 generations" in generate_status(limited)
        r = httpx.post(
            url + "/admin/login", json={"password": ADMIN_PW}, headers={"X-Forwarded-For": "192.0.2.201"}, timeout=30
        )
        assert r.status_code == 403 and "paused" in r.json()["message"]
    with VoteStore(tmp_path / "data") as store:
        assert store.count(include_excluded=True) == 0  # the expired battle stored nothing
