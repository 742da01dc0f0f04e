"""Issue 12.1 over real HTTP: visitors who leave mid-stream must not freeze generation for everyone.

Before the scheduler rewrite, ``Engine.stream`` held a ``threading.RLock`` across ``yield``; when a visitor closed the
tab, Gradio closed the generator from another thread (``RuntimeError: cannot release un-acquired lock``) and every
later Generate hung until restart. Here a live app (embedded SmolLM2 on CPU) gets 8 simultaneous Generate streams
through Gradio's queue (``/gradio_api/queue/join`` + the ``queue/data`` event stream), each on its own HTTP
connection: once all 8 are streaming, 3 leave (2 drop their connection as a closed tab does, 1 posts
``/gradio_api/cancel`` as the Stop button does, then drops it too), the other 5 must finish, and a 9th request sent
when the model is free must start streaming promptly. ``tests/integration/test_scheduler.py`` checks the same at the
engine level, where the scheduler's load can be read; this one goes through Gradio's own disconnect handling.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support.app_server import running_app
from tests.support.gradio_http import GradioHTTP

pytestmark = pytest.mark.slow

VISITORS = 8  # = the scheduler's batch on CPU: all of them decode together
LEAVERS = (0, 1, 2)  # 0 and 1 drop the connection, 2 presses Stop (/cancel) first
CANCELLER = 2
MAX_NEW = 32  # a few seconds of streaming per visitor on a loaded 2-core box, without making the test long
REPLY = 2  # output index of the first reply box (gen-reply-0): [visible, header, reply, stats, ...]
ENV = {
    "REPLY_ARENA_MAX_NEW_TOKENS": str(MAX_NEW),
    "GENERATE_PER_MINUTE": "100",  # 10 Generates from 127.0.0.1 (no proxy is trusted): well inside the limits
    "GENERATE_PER_DAY": "1000",
    "ARENA_POOL": "0",  # no background pre-generation rows competing for the batch
}
TWEETS = [
    "Coffee or tea in the morning?",
    "What is the best way to learn a new language?",
    "Is it going to rain this weekend?",
    "Which book should I read next?",
    "Cats or dogs, and why?",
    "How do I keep my plants alive?",
    "What is your favourite season?",
    "Any tips for a first marathon?",
    "Should I learn Rust or Go?",
]
STALL_S = 150  # per-read and per-thread cap: a deadlocked queue fails the test instead of hanging it


def _has_reply_text(out_data: list) -> bool:
    """True if this process_generating message puts text into the first reply box (full update or a diff)."""
    if len(out_data) <= REPLY:
        return False
    item = out_data[REPLY]
    if isinstance(item, dict):  # the first message of a stream carries full updates
        return bool(item.get("value"))
    for op in item or []:  # later ones carry diffs: [["append", ["value"], "text"], ...]
        if len(op) == 3 and op[0] in ("append", "replace", "add") and op[1] == ["value"] and op[2]:
            return True
    return False


@dataclass
class Visitor:
    index: int
    url: str
    fn_index: int
    data: list
    leave: bool
    all_streaming: threading.Event
    session_hash: str = field(default_factory=lambda: secrets.token_hex(8))
    event_id: str | None = None
    first_text: threading.Event = field(default_factory=threading.Event)
    t_first_text: float | None = None
    t_done: float | None = None
    completed: dict | None = None  # the process_completed message
    left_mid_stream: bool = False
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            self.error = exc

    def _run(self) -> None:
        # A client of its own: closing it closes this visitor's TCP connection and nobody else's.
        with httpx.Client(base_url=self.url, timeout=httpx.Timeout(STALL_S, connect=30)) as http:
            body = {
                "data": self.data,
                "fn_index": self.fn_index,
                "session_hash": self.session_hash,
                "event_data": None,
                "trigger_id": None,
            }
            r = http.post("/gradio_api/queue/join", json=body)
            r.raise_for_status()
            self.event_id = r.json()["event_id"]
            with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": self.session_hash}) as s:
                for line in s.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    msg = json.loads(line[5:])
                    if msg.get("event_id") not in (None, self.event_id):
                        continue
                    kind = msg.get("msg")
                    if kind == "process_generating" and not self.first_text.is_set():
                        if _has_reply_text((msg.get("output") or {}).get("data") or []):
                            self.t_first_text = time.monotonic()
                            self.first_text.set()
                    if kind == "process_completed":
                        self.t_done = time.monotonic()
                        self.completed = msg
                        return
                    if kind == "close_stream":
                        return
                    if self.leave and self.first_text.is_set():
                        # Leave only once all 8 are streaming together, so the 3 leave a full running batch.
                        if not self.all_streaming.wait(STALL_S):
                            raise TimeoutError("the 8 visitors never all streamed")
                        self.left_mid_stream = True
                        if self.index == CANCELLER:
                            http.post(
                                "/gradio_api/cancel",
                                json={
                                    "session_hash": self.session_hash,
                                    "fn_index": self.fn_index,
                                    "event_id": self.event_id,
                                },
                            ).raise_for_status()
                        return  # leaving both `with` blocks closes the stream and the connection


def _final_reply(msg: dict) -> tuple[str, str, str]:
    """(reply text, stats line, status) of a completed Generate; the status is the last output."""
    data = msg["output"]["data"]
    return (data[REPLY] or {}).get("value") or "", (data[REPLY + 1] or {}).get("value") or "", data[-1].get("value")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("probe-disconnect")
    with running_app(tmp, extra_env=ENV) as url:
        yield url, tmp


def test_visitors_leaving_mid_stream_do_not_stall_the_queue(app):
    url, tmp = app
    with GradioHTTP(url) as g:
        gen = g.dependency_for("gen-go")
        # [tweet, variants, thinking, temperature, top_p, top_k, min_p, max_new, rep, seed]
        base = g.default_inputs(gen)

    def inputs(tweet: str) -> list:
        data = list(base)
        data[0], data[1], data[7] = tweet, ["base"], MAX_NEW  # one scheduler row per visitor
        return data

    all_streaming = threading.Event()
    visitors = [Visitor(i, url, gen["id"], inputs(TWEETS[i]), i in LEAVERS, all_streaming) for i in range(VISITORS)]
    threads = [threading.Thread(target=v.run, name=f"visitor-{v.index}", daemon=True) for v in visitors]
    for t in threads:
        t.start()

    deadline = time.monotonic() + STALL_S
    for v in visitors:  # wait on the condition, not a sleep
        while not v.first_text.wait(0.5):
            assert v.error is None, f"visitor {v.index}: {v.error!r}"
            assert v.completed is None, f"visitor {v.index} completed without any reply text: {v.completed}"
            assert time.monotonic() < deadline, f"visitor {v.index} never started streaming"
    all_streaming.set()
    for t in threads:
        t.join(STALL_S)
    assert not [t.name for t in threads if t.is_alive()], "a visitor's stream hung: the queue stalled"
    assert not [(v.index, repr(v.error)) for v in visitors if v.error], "a visitor's HTTP call failed"

    leavers = [visitors[i] for i in LEAVERS]
    survivors = [v for v in visitors if not v.leave]
    assert all(v.left_mid_stream and v.completed is None for v in leavers), (
        "the 3 leavers must have left before their reply completed"
    )
    for v in survivors:
        assert v.completed is not None and v.completed.get("success"), f"visitor {v.index}: {v.completed}"
        reply, stats, status = _final_reply(v.completed)
        assert reply.strip(), f"visitor {v.index} got an empty reply"
        assert status == "Done." and "tokens" in stats, f"visitor {v.index}: {status!r} / {stats!r}"

    # The model is free once the last survivor has its final event (the leavers' rows went when they left).
    model_free = max(v.t_done for v in survivors)
    ninth = Visitor(VISITORS, url, gen["id"], inputs(TWEETS[VISITORS]), False, all_streaming)
    th = threading.Thread(target=ninth.run, name="visitor-9", daemon=True)
    th.start()
    th.join(STALL_S)
    assert not th.is_alive(), "the 9th request hung after 3 visitors left mid-stream"
    assert ninth.error is None, repr(ninth.error)
    assert ninth.t_first_text is not None, f"the 9th request never streamed reply text: {ninth.completed}"
    wait_s = ninth.t_first_text - model_free
    # The issue asks for "within a second of the model being free". Here that span also holds a fresh HTTP
    # connection, queue/join, the SSE stream and a prompt prefill on a CPU that another test run may be sharing
    # (measured ~0.6-0.9 s on a loaded 2-core box), so the bound is 5 s: it tells "started at once" from "stalled"
    # (before the fix: never) without flaking on a busy CI box. The measured value is printed and in the message.
    print(f"\n9th request: first reply text {wait_s:.2f} s after the last survivor finished")
    assert wait_s < 5.0, f"the 9th request's first reply text came {wait_s:.2f} s after the model was free"
    assert ninth.completed is not None and ninth.completed.get("success")
    assert _final_reply(ninth.completed)[2] == "Done."

    assert httpx.get(url + "/", timeout=30).status_code == 200  # the app still serves the page
    log = (tmp / "app.log").read_text()
    assert "un-acquired lock" not in log, log[-3000:]
