"""Shared pieces of the loopback probe suite: the live app, and which of its events are admin handlers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.app_server import running_app  # noqa: E402,F401
from tests.support.gradio_http import CallResult, GradioHTTP  # noqa: E402,F401

PROBE_ENV = {
    "REPLY_ARENA_MAX_NEW_TOKENS": "16",
    "GENERATE_PER_MINUTE": "3",
    "BATTLES_PER_MINUTE": "4",
    "VOTES_PER_MINUTE": "2",
    "MAX_UPLOAD_MB": "1",
    "ANTHROPIC_API_KEY": "sk-probe-not-a-key",
}
ADMIN_PW = "test-admin-pw"  # what app_server.running_app sets


def admin_dependencies(g: GradioHTTP) -> list[dict]:
    """Backend events of the admin tabs and '(admin)' sections, found from the page config alone, as a probe would."""
    comps = {c["id"]: c for c in g.config["components"]}
    inside: set[int] = set()

    def walk(node: dict, admin: bool) -> None:
        label = str(comps.get(node["id"], {}).get("props", {}).get("label") or "")
        admin = admin or "(admin)" in label
        if admin:
            inside.add(node["id"])
        for ch in node.get("children", []):
            walk(ch, admin)

    walk(g.config["layout"], False)
    deps = g.config["dependencies"]
    found: list[dict] = []
    for d in deps:  # a chained .then() inherits its parent's side
        parent = d.get("trigger_after")
        if d.get("backend_fn") and (any(t[0] in inside for t in d["targets"]) or parent in {x["id"] for x in found}):
            found.append(d)
    return found


SECRET = "probe-secret"  # planted in the data dir before start: no refused call may echo it


def plant_secrets(data_dir: Path) -> None:
    """A review dataset an attacker would like to read, so a leaking handler has something to leak."""
    from training.data.pairs import Pair
    from training.data.review_store import ReviewStore

    ReviewStore(data_dir).create_dataset(
        f"{SECRET}-dataset",
        [
            Pair(pair_id=f"p{i}", tweet_id=f"t{i}", tweet=f"{SECRET} tweet {i}?", reply=f"{SECRET} reply {i}")
            for i in range(3)
        ],
    )


def harmless(value: Any) -> bool:
    """An output that gives a non-admin nothing: empty, a bare/visibility-only update, or a message naming admin."""
    if value in (None, "", [], {}):
        return True
    if isinstance(value, str):
        return "admin" in value.lower()
    if isinstance(value, dict) and value.get("__type__") == "update":
        rest = {k: v for k, v in value.items() if k not in ("__type__", "visible", "interactive", "active")}
        return all(harmless(v) for v in rest.values()) or "admin" in json.dumps(rest).lower()
    if isinstance(value, dict) and "headers" in value and "data" in value:  # an empty dataframe
        return (
            not value["data"]
            or value["data"] == [[]]
            or all(all(c in ("", None) for c in row) for row in value["data"])
        )
    return False


def refused(res: CallResult) -> bool:
    """Refused = an error, or nothing planted comes back and the outputs are empty or say that admin is needed."""
    if not res.success:
        return True
    if SECRET in json.dumps(res.data):
        return False
    return all(harmless(v) for v in res.data) or any(isinstance(v, str) and "needs an admin" in v for v in res.data)


def generate_status(res: CallResult) -> str:
    """The Generate status line of a finished call. Generate answers a refusal there ("⚠️ <sentence>") and keeps the
    replies already on screen, instead of raising an error toast. Markdown escapes (user text is rendered inert) are
    dropped so the sentence can be compared."""
    assert res.success, res.error
    last = res.data[-1]
    return str(last.get("value", "") if isinstance(last, dict) else last).replace("\\", "")
