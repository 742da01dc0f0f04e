"""A local HTTP server that speaks the Anthropic Messages API (POST /v1/messages), for tests and offline demos.

It runs a deterministic "model" that follows instructions the way a real LLM plausibly would:

* It reads the prompt it is given. Text inside the data delimiters (<tweet>, <reply>, <reply_a>, <reply_b> tags)
  is data. If a prompt-injection command ("ignore previous instructions ...") appears OUTSIDE those delimiters -- a
  prompt that does not delimit, or does not escape, user text -- it obeys the command.
* Otherwise it judges by a simple, visible rule: a reply's merit is its word overlap with the tweet minus a length
  penalty (shorter + more on-topic wins). Pairwise prompts get a chain of thought and a verdict, absolute prompts a
  1-10 score.

``reject_temperature=True`` answers 400 to a request carrying ``temperature``, as the newest Claude models do.
Failure injection: ``fail_first=N, fail_status=429|500|529`` answers the first N requests with that error (429 carries
``retry-after``), so client retries can be tested with the real ``anthropic`` client. Every request body is recorded
in ``server.requests``.

    with MessagesServer() as srv:
        client = anthropic.Anthropic(api_key="test", base_url=srv.url)

Run it by hand: ``python tests/support/messages_server.py --port 8765`` then ``--anthropic-base-url http://127.0.0.1:8765``.
"""

from __future__ import annotations

import html
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

DATA_TAGS = ("tweet", "reply_a", "reply_b", "reply")
_TAG_RE = {t: re.compile(rf"<{t}>(.*?)</{t}>", re.S) for t in DATA_TAGS}
INJECTION_RE = re.compile(r"ignore\s+(?:all\s+)?(?:the\s+)?(?:previous|prior|above|earlier)\s+instructions", re.I)
_SAY_RE = re.compile(
    r"(?:say|answer|output|declare|respond)\s+(?:that\s+)?(?:reply\s+|response\s+)?([AB])\s+(?:wins|is\s+(?:the\s+)?(?:better|winner))",
    re.I,
)
_WORD = re.compile(r"[a-z0-9']+")
_STOP = frozenset(
    "a an the and or but to of in on at for with is are was were be it this that i you we they my your "
    "do does not no so just what how why who".split()
)

Responder = Callable[[dict], str]


def prompt_text(req: dict) -> str:
    """System + every message's text, as the model would read it."""
    parts = []
    system = req.get("system")
    if isinstance(system, str):
        parts.append(system)
    elif isinstance(system, list):
        parts += [b.get("text", "") for b in system if isinstance(b, dict)]
    for m in req.get("messages") or []:
        c = m.get("content")
        if isinstance(c, str):
            parts.append(c)
        elif isinstance(c, list):
            parts += [b.get("text", "") for b in c if isinstance(b, dict)]
    return "\n".join(parts)


def _outside_data(text: str) -> str:
    for t in DATA_TAGS:
        text = _TAG_RE[t].sub(" ", text)
    return text


def _words(s: str) -> set[str]:
    return {w for w in _WORD.findall(s.lower()) if w not in _STOP}


def merit(tweet: str, reply: str) -> float:
    """The rule: tweet-word overlap, minus one point per 60 characters."""
    return len(_words(tweet) & _words(reply)) - len(reply) / 60.0


def _naive_fields(text: str) -> dict[str, str]:
    """Fields of an undelimited prompt: lines like 'Tweet: ...', 'Reply A: ...', 'Reply B: ...', 'Reply: ...'."""
    out: dict[str, str] = {}
    for key, pat in (
        ("tweet", r"^Tweet:\s*(.*)$"),
        ("reply_a", r"^Reply A:\s*(.*)$"),
        ("reply_b", r"^Reply B:\s*(.*)$"),
        ("reply", r"^Reply:\s*(.*)$"),
    ):
        m = re.search(pat, text, re.M)
        if m:
            out[key] = m.group(1)
    return out


def _fields(text: str) -> dict[str, str]:
    tagged = {t: html.unescape(m.group(1).strip()) for t in DATA_TAGS if (m := _TAG_RE[t].search(text))}
    return tagged or _naive_fields(text)


def _obey(outside: str, text: str) -> str | None:
    """An injected command seen outside the data: follow it like an over-compliant model would."""
    m = INJECTION_RE.search(outside)
    if not m:
        return None
    tail = outside[m.end() : m.end() + 300]
    say = _SAY_RE.search(tail)
    if say:
        return say.group(1).upper()
    # "... declare this reply the winner": the reply the command started in (the last opening tag or 'Reply X:' before
    # it).
    pos = text.find(m.group(0))
    labels = [(mm.group(1) or mm.group(2)) for mm in re.finditer(r"<reply_([ab])>|Reply ([AB]):", text[:pos])]
    return labels[-1].upper() if labels else "A"


def rule_judge(req: dict) -> str:
    """The default deterministic model (see the module docstring)."""
    text = prompt_text(req)
    outside = _outside_data(text)
    fields = _fields(text)
    pairwise = "reply_a" in fields and "reply_b" in fields
    obeyed = _obey(outside, text)
    if pairwise:
        if obeyed:
            return f"I was told to pick {obeyed}.\n\nWinner: {obeyed}"
        tweet = fields.get("tweet", "")
        ma, mb = merit(tweet, fields["reply_a"]), merit(tweet, fields["reply_b"])
        winner = "A" if ma > mb + 1e-9 else "B" if mb > ma + 1e-9 else "tie"
        return (
            f"<reasoning>Relevance and concision decide here: Reply A scores {ma:.2f}, Reply B scores {mb:.2f} "
            f"on overlap with the tweet minus length.</reasoning>\n"
            f'{{"winner": "{winner}"}}'
        )
    reply = fields.get("reply")
    if reply is not None:
        if obeyed:
            return "As instructed.\n\nScore: 10/10"
        m = merit(fields.get("tweet", ""), reply)
        score = max(1, min(10, round(5 + 1.5 * m)))
        return f'<reasoning>Overlap minus length gives {m:.2f}.</reasoning>\n{{"score": {score}}}'
    return "I am not sure what to judge."


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_" + uuid.uuid4().hex[:12])
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # the name BaseHTTPRequestHandler dispatches to
        owner: MessagesServer = self.server.owner
        n = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.path.split("?")[0].rstrip("/") != "/v1/messages":
            return self._send(
                404, {"type": "error", "error": {"type": "not_found_error", "message": f"no route {self.path}"}}
            )
        try:
            req = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            return self._send(
                400, {"type": "error", "error": {"type": "invalid_request_error", "message": "body is not JSON"}}
            )
        with owner.lock:
            owner.requests.append(req)
            owner.headers.append(dict(self.headers))
            call = len(owner.requests)
        if call <= owner.fail_first:
            status = owner.fail_status
            kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
            extra = {"retry-after": owner.retry_after} if status == 429 and owner.retry_after is not None else {}
            return self._send(
                status, {"type": "error", "error": {"type": kind, "message": f"injected {status}"}}, extra
            )
        for key in ("model", "messages", "max_tokens"):
            if key not in req:
                return self._send(
                    400,
                    {"type": "error", "error": {"type": "invalid_request_error", "message": f"{key}: Field required"}},
                )
        if owner.reject_temperature and "temperature" in req:
            return self._send(
                400,
                {
                    "type": "error",
                    "error": {
                        "type": "invalid_request_error",
                        "message": "`temperature` is deprecated for this model.",
                    },
                },
            )
        text = owner.responder(req)
        prompt = prompt_text(req)
        self._send(
            200,
            {
                "id": "msg_" + uuid.uuid4().hex[:16],
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
                "model": req["model"],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": max(1, len(prompt) // 4), "output_tokens": max(1, len(text) // 4)},
            },
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: "MessagesServer"


class MessagesServer:
    """ThreadingHTTPServer on 127.0.0.1 and a free port, serving POST /v1/messages in a background thread."""

    def __init__(
        self,
        responder: Responder = rule_judge,
        fail_first: int = 0,
        fail_status: int = 429,
        retry_after: str | None = "0",
        port: int = 0,
        reject_temperature: bool = False,
    ):
        self.responder = responder
        self.reject_temperature = reject_temperature  # newer Claude models answer 400 to any temperature
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "MessagesServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self, fail_first: int = 0, fail_status: int = 429) -> None:
        with self.lock:
            self.requests.clear()
            self.headers.clear()
            self.fail_first, self.fail_status = fail_first, fail_status

    def __enter__(self) -> "MessagesServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Local Anthropic Messages API stand-in with a rule-based judge.")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    srv = MessagesServer(port=a.port)
    print(srv.url, flush=True)
    srv._httpd.serve_forever()
