"""A minimal HTTP client for a live Gradio app: read /config, call any event by fn_index, as an attacker would.

The official gradio_client only calls named API endpoints and hides the headers and cookies a probe needs to
control, so this speaks the queue protocol (POST queue/join, then the queue/data event stream) directly.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class CallResult:
    success: bool
    data: list[Any]
    error: str | None
    status: int = 200  # HTTP status of queue/join (non-200: refused before the queue)


class GradioHTTP:
    def __init__(
        self, url: str, headers: dict | None = None, cookies: dict | None = None, timeout: float = 180
    ) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers or {}, cookies=cookies or {}, timeout=timeout)
        self._config: dict | None = None

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "GradioHTTP":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def config(self) -> dict:
        if self._config is None:
            self._config = self.http.get("/config").json()
        return self._config

    def component(self, cid: int) -> dict:
        return next(c for c in self.config["components"] if c["id"] == cid)

    def by_elem_id(self, elem_id: str) -> dict:
        return next(c for c in self.config["components"] if c.get("props", {}).get("elem_id") == elem_id)

    def dependency_for(self, elem_id: str, trigger: str = "click", backend_only: bool = True) -> dict:
        cid = self.by_elem_id(elem_id)["id"]
        for d in self.config["dependencies"]:
            if [cid, trigger] in d["targets"] and (d.get("backend_fn") or not backend_only):
                return d
        raise KeyError(f"no {trigger} handler on #{elem_id}")

    def default_inputs(self, dep: dict) -> list[Any]:
        return [self.component(i).get("props", {}).get("value") for i in dep["inputs"]]

    def call(
        self,
        fn_index: int,
        data: list[Any],
        session_hash: str | None = None,
        headers: dict | None = None,
        trigger_id: int | None = None,
    ) -> CallResult:
        session_hash = session_hash or secrets.token_hex(8)
        body = {
            "data": data,
            "fn_index": fn_index,
            "session_hash": session_hash,
            "event_data": None,
            "trigger_id": trigger_id,
        }
        r = self.http.post(
            "/gradio_api/queue/join",
            content=json.dumps(body),
            headers={"content-type": "application/json", **(headers or {})},
        )
        if r.status_code != 200:
            return CallResult(False, [], r.text, r.status_code)
        event_id = r.json()["event_id"]
        last: list[Any] = []
        with self.http.stream(
            "GET", "/gradio_api/queue/data", params={"session_hash": session_hash}, headers=headers or {}
        ) as s:
            for line in s.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") not in (None, event_id):
                    continue
                kind = msg.get("msg")
                out = msg.get("output") or {}
                if kind == "process_generating" and isinstance(out.get("data"), list):
                    last = out["data"]
                if kind == "process_completed":
                    if msg.get("success") and out.get("data") is not None:
                        return CallResult(True, out["data"] or last, None)
                    return CallResult(bool(msg.get("success")), last, out.get("error") or out.get("title") or "")
                if kind == "close_stream":
                    break
        return CallResult(False, last, "stream closed without a result")
