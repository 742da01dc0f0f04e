"""Limits are per trusted address and persist in SQLite across restarts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from security import RateLimited, SecurityDB, VisitorLimits, client_address
from security.ratelimit import PersistentRateLimiter, RateWindow


class _Headers(dict):
    def getlist(self, key):
        v = self.get(key)
        return v if isinstance(v, list) else ([v] if v else [])


def _req(peer: str, xff: list[str] | str | None = None):
    return SimpleNamespace(client=SimpleNamespace(host=peer), headers=_Headers({"x-forwarded-for": xff} if xff else {}))


def test_forwarded_for_is_ignored_unless_behind_a_proxy():
    rotating = [client_address(_req("203.0.113.9", f"10.0.0.{i}"), proxy_hops=0) for i in range(5)]
    assert set(rotating) == {"203.0.113.9"}


def test_behind_one_proxy_the_last_entry_counts_not_the_client_supplied_ones():
    # The client sends "1.2.3.4"; the proxy appends the address it saw.
    assert client_address(_req("10.1.1.1", "1.2.3.4, 198.51.100.7"), proxy_hops=1) == "198.51.100.7"
    assert client_address(_req("10.1.1.1", ["1.2.3.4", "198.51.100.7"]), proxy_hops=1) == "198.51.100.7"
    assert client_address(_req("10.1.1.1", "a, b, c"), proxy_hops=2) == "b"
    assert client_address(_req("10.1.1.1"), proxy_hops=1) == "10.1.1.1"  # no header: not through the proxy
    assert client_address(None) == "unknown"


def test_limiter_counts_per_key_and_survives_restart(tmp_path):
    win = [RateWindow(60.0, 2, "slow down")]
    lim = PersistentRateLimiter(SecurityDB(tmp_path), "vote", win)
    lim.hit(["a"], now=100.0)
    lim.hit(["a"], now=101.0)
    with pytest.raises(RateLimited, match="slow down"):
        lim.hit(["a"], now=102.0)
    lim.hit(["b"], now=102.0)  # other keys are independent
    again = PersistentRateLimiter(SecurityDB(tmp_path), "vote", win)  # a restart
    assert again.check(["a"], now=103.0) == "slow down"
    assert again.check(["a"], now=161.5) is None  # the window slid past
    assert PersistentRateLimiter(SecurityDB(tmp_path), "other", win).check(["a"], now=103.0) is None


def test_refused_hit_is_not_counted(tmp_path):
    lim = PersistentRateLimiter(SecurityDB(tmp_path), "x", [RateWindow(60.0, 1, "no")])
    lim.hit(["a"], now=0.0)
    for t in range(1, 20):
        with pytest.raises(RateLimited):
            lim.hit(["a"], now=float(t))
    assert lim.count("a", 3600, now=20.0) == 1


def test_visitor_limits_message_is_one_sentence(tmp_path):
    limits = VisitorLimits.build(SecurityDB(tmp_path), generate_per_minute=1, battles_per_minute=1)
    limits.generate.hit(["ip"])
    with pytest.raises(RateLimited) as exc:
        limits.generate.hit(["ip"])
    assert str(exc.value).count(".") == 1 and "per minute" in str(exc.value)
    limits.battle.hit(["ip"])  # separate budget
