"""Admin = a server-issued token in a cookie (not Gradio's session_hash); throttled logins; logout; expiry; OAuth."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from security import AdminGate, AdminRequired, SecurityDB
from security.session import COOKIE_NAME


def _req(token: str | None = None, session_hash: str = "s1", scope: dict | None = None):
    headers = {"cookie": f"{COOKIE_NAME}={token}"} if token else {}
    return SimpleNamespace(session_hash=session_hash, headers=headers, scope=scope or {})


def test_session_hash_alone_is_not_admin_and_token_is(tmp_path):
    gate = AdminGate(password="pw", on_space=False, db=SecurityDB(tmp_path))
    token = gate.login("pw", "10.0.0.1")
    assert gate.is_admin(_req(token, session_hash="victim"))
    # Before: admin rights were keyed on session_hash, so anyone replaying it was admin.
    assert not gate.is_admin(_req(None, session_hash="victim"))
    assert not gate.is_admin(_req("forged-" + token[7:], session_hash="victim"))
    with pytest.raises(AdminRequired, match="log in"):
        gate.require(_req(None, session_hash="victim"))


def test_logout_and_expiry_end_the_session(tmp_path):
    gate = AdminGate(password="pw", on_space=False, db=SecurityDB(tmp_path), session_ttl_s=60)
    t1, t2 = gate.login("pw", "a"), gate.login("pw", "a")
    gate.logout(_req(t1))
    assert not gate.is_admin(_req(t1)) and gate.is_admin(_req(t2))
    assert gate.sessions.valid(t2, now=time.time() + 59) and not gate.sessions.valid(t2, now=time.time() + 61)


def test_sessions_survive_restart_but_db_holds_no_token(tmp_path):
    token = AdminGate(password="pw", on_space=False, db=SecurityDB(tmp_path)).login("pw", "a")
    again = AdminGate(password="pw", on_space=False, db=SecurityDB(tmp_path))
    assert again.is_admin(_req(token))
    assert token.encode() not in (tmp_path / "security.sqlite3").read_bytes()


def test_login_throttled_per_address_then_globally(tmp_path):
    gate = AdminGate(password="pw", on_space=False, db=SecurityDB(tmp_path), max_failures=3, max_failures_global=5)
    for _ in range(3):
        with pytest.raises(AdminRequired, match="Wrong admin password"):
            gate.login("guess", "1.1.1.1")
    with pytest.raises(AdminRequired, match="from your address"):
        gate.login("pw", "1.1.1.1")  # even the right password: the address is paused
    assert gate.login("pw", "2.2.2.2")  # another address is unaffected
    for addr in ("3.3.3.3", "4.4.4.4"):  # rotating addresses still count against the global budget
        with pytest.raises(AdminRequired, match="Wrong"):
            gate.login("guess", addr)
    with pytest.raises(AdminRequired, match="paused"):
        gate.login("pw", "5.5.5.5")
    # the throttle is in SQLite: a restart does not reset it
    with pytest.raises(AdminRequired, match="paused"):
        AdminGate(password="pw", on_space=False, db=SecurityDB(tmp_path), max_failures=3, max_failures_global=5).login(
            "pw", "6.6.6.6"
        )


def test_oauth_profile_from_session_must_be_on_allow_list(tmp_path):
    gate = AdminGate(password=None, on_space=True, allowed_users={"alice"}, db=SecurityDB(tmp_path))

    def oauth(user: str, expires: float):
        return {"session": {"oauth_info": {"expires_at": expires, "userinfo": {"preferred_username": user}}}}

    later = time.time() + 3600
    assert gate.is_admin(_req(scope=oauth("Alice", later)))
    assert not gate.is_admin(_req(scope=oauth("bob", later)))
    assert not gate.is_admin(_req(scope=oauth("alice", time.time() - 1)))  # expired sign-in
    assert not gate.is_admin(_req())
    assert gate.is_admin(None, profile=SimpleNamespace(username="alice"))
    with pytest.raises(AdminRequired, match="ADMIN_USERS|log in"):
        gate.require(_req(scope=oauth("bob", later)))
    # off a Space the OAuth session means nothing
    local = AdminGate(password="pw", on_space=False, allowed_users={"alice"}, db=SecurityDB(tmp_path))
    assert not local.is_admin(_req(scope=oauth("alice", later)))


def test_space_means_what_gradio_means():
    from context import Settings

    # A SPACE_ID alone: Gradio would mock HF sign-in here (needs an HF login) and stop the app
    assert not Settings.from_env({"SPACE_ID": "me/arena"}).on_space
    assert Settings.from_env({"SPACE_ID": "me/arena", "SYSTEM": "spaces"}).on_space
