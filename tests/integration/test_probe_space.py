"""The app starts as a Hugging Face Space (SPACE_ID + the OAuth settings a Space injects) and lets in exactly the
ADMIN_USERS who signed in with HF.

Before the fix the app died at launch (`gradio[oauth]` missing) and no admin handler looked at the OAuth profile.
No HF server is involved: the test signs the session cookie the way Gradio's SessionMiddleware does after a real
HF login (the secret is derived from OAUTH_CLIENT_SECRET, which the test chose), so the app sees a signed-in user.
"""

from __future__ import annotations

import hashlib
import json
import time
from base64 import b64encode

import httpx
import itsdangerous
import pytest

from tests.support.probe_support import SECRET, GradioHTTP, admin_dependencies, plant_secrets, refused, running_app

pytestmark = pytest.mark.slow

OAUTH_SECRET = "probe-oauth-client-secret"
SPACE_ENV = {
    "SYSTEM": "spaces",
    "SPACE_ID": "probe/reply-arena",
    "OAUTH_CLIENT_ID": "probe-client",
    "OAUTH_CLIENT_SECRET": OAUTH_SECRET,
    "OAUTH_SCOPES": "openid profile",
    "OPENID_PROVIDER_URL": "http://127.0.0.1:9",  # never contacted
    "ADMIN_USERS": "alice",
    "ADMIN_PASSWORD": "",
    "REPLY_ARENA_MAX_NEW_TOKENS": "16",
}


def _hf_session(username: str) -> str:
    info = {
        "oauth_info": {
            "access_token": "t",
            "expires_at": int(time.time()) + 3600,
            "userinfo": {"preferred_username": username, "name": username, "profile": "", "picture": ""},
        }
    }
    signer = itsdangerous.TimestampSigner(hashlib.sha256((OAUTH_SECRET + "-v4").encode()).hexdigest())
    return signer.sign(b64encode(json.dumps(info).encode())).decode()


def test_space_starts_and_only_allowed_hf_users_are_admin(tmp_path):
    plant_secrets(tmp_path / "data")
    with running_app(tmp_path, extra_env=SPACE_ENV) as url:
        page = httpx.get(url + "/", timeout=30)
        assert "https://huggingface.co" in page.headers["content-security-policy"]  # the Hub's iframe may show it
        with (
            GradioHTTP(url) as anon,
            GradioHTTP(url, cookies={"session": _hf_session("alice")}) as alice,
            GradioHTTP(url, cookies={"session": _hf_session("mallory")}) as mallory,
        ):
            deps = {d.get("api_name"): d for d in admin_dependencies(anon)}
            ledger, data_open = deps["on_ledger"], deps["on_open_1"]
            assert alice.call(ledger["id"], []).data[0] == ""
            assert SECRET in json.dumps(alice.call(data_open["id"], alice.default_inputs(data_open)).data)
            for outsider in (anon, mallory):
                assert refused(outsider.call(ledger["id"], []))
                res = outsider.call(data_open["id"], outsider.default_inputs(data_open))
                assert refused(res)
            # a cookie signed with any other key is ignored, not trusted
            forged = (
                itsdangerous.TimestampSigner("guess").sign(b64encode(json.dumps({"oauth_info": {}}).encode())).decode()
            )
            with GradioHTTP(url, cookies={"session": forged}) as f:
                assert refused(f.call(ledger["id"], []))
        # no password is configured on the Space: the password route refuses
        r = httpx.post(url + "/admin/login", json={"password": ""}, timeout=30)
        assert r.status_code == 403 and "ADMIN_USERS" in r.json()["message"]
