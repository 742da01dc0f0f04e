"""Local HTTP servers that speak the X API v2 search endpoints and the Apify run/dataset endpoints, for tests.

XApiServer: ``GET /2/tweets/search/recent|all`` with ``query`` (``conversation_id:ID`` [``min_faves:N``]),
``max_results`` (10..100), ``next_token``; replies come in ``data``, their parents and authors in ``includes``.
Bearer token checked (401 otherwise). Failure injection by request number (1-based, counted over search requests):
``faults={2: "429", 4: "503"}``; a 429 carries ``x-rate-limit-reset`` = server clock + ``reset_after`` s, and the
server refuses (429 again) any request made before that reset, so a client that does not wait fails the test.
``errors_page=N`` makes page N of every conversation carry an ``errors`` array and no ``includes``;
``reject_min_faves=True`` answers 400 to a query with ``min_faves:`` as a plan without the operator would.

ApifyServer: ``POST /v2/actors/{actor}/runs`` (or ``/v2/acts/...``) → a run; ``GET /v2/actor-runs/{id}`` → RUNNING
``polls_to_finish`` times,
then SUCCEEDED with ``usageTotalUsd``; ``GET /v2/datasets/{id}/items`` with offset/limit + the pagination headers.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse


def make_conversation(conv_id: int, n_replies: int, *, root_author: str = "u0", start: int = 1_780_000_000) -> dict:
    """A root tweet and ``n_replies`` replies: every 7th reply answers the previous reply, every 11th is by the root
    author answering a reply (a thread continuation, which the importer drops); one reply answers a deleted tweet."""

    def ts(s: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(start + s))

    root = {
        "id": str(conv_id),
        "text": f"Root tweet {conv_id}: what is the best way to learn to cook?",
        "author_id": root_author,
        "conversation_id": str(conv_id),
        "created_at": ts(0),
        "lang": "en",
        "public_metrics": {"like_count": 500, "retweet_count": 50, "reply_count": n_replies, "quote_count": 1},
    }
    replies = []
    for i in range(1, n_replies + 1):
        rid = str(conv_id * 1000 + i)
        parent, author = str(conv_id), f"u{i % 13 + 1}"
        if i % 7 == 0 and replies:
            parent = replies[-1]["id"]
        if i % 11 == 0 and replies:
            parent, author = replies[-1]["id"], replies[-1]["author_id"]
        if i == n_replies and n_replies > 3:
            parent = str(conv_id * 1000 + 999_999)  # a deleted parent: never in includes
        replies.append(
            {
                "id": rid,
                "text": f"@someone reply number {i} about cooking, try recipe {i}",
                "author_id": author,
                "conversation_id": str(conv_id),
                "created_at": ts(60 * i),
                "in_reply_to_user_id": "x",
                "lang": "en",
                "referenced_tweets": [{"type": "replied_to", "id": parent}],
                "public_metrics": {
                    "like_count": (i * 3) % 20,
                    "retweet_count": i % 3,
                    "reply_count": 0,
                    "quote_count": 0,
                },
            }
        )
    return {"root": root, "replies": replies}


def expected_pairs(conv: dict) -> int:
    """What the importer must find: replies whose parent exists and whose author differs from the parent's."""
    by_id = {conv["root"]["id"]: conv["root"], **{r["id"]: r for r in conv["replies"]}}
    n = 0
    for r in conv["replies"]:
        p = by_id.get(r["referenced_tweets"][0]["id"])
        if p is not None and p["author_id"] != r["author_id"]:
            n += 1
    return n


class _Server:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def _handler(self):
        server = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, status: int, body, headers: dict | None = None) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, str(v))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self):
                server.handle(self, "GET", None)

            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                server.handle(self, "POST", body)

        return H

    def handle(self, h, method: str, body: bytes | None) -> None:
        raise NotImplementedError

    def __enter__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


class XApiServer(_Server):
    def __init__(
        self,
        conversations: dict[str, dict],
        *,
        token: str = "test-bearer",
        faults: dict | None = None,
        errors_page: int | None = None,
        reject_min_faves: bool = False,
        reset_after: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.conversations, self.token, self.faults = conversations, token, dict(faults or {})
        self.errors_page, self.reject_min_faves, self.reset_after, self.clock = (
            errors_page,
            reject_min_faves,
            reset_after,
            clock,
        )
        self.n_search = 0
        self.blocked_until = 0.0
        self.posts_served = 0

    def handle(self, h, method, body):
        u = urlparse(h.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        with self._lock:
            self.requests.append({"path": u.path, "params": q, "auth": h.headers.get("authorization", "")})
            if h.headers.get("authorization") != f"Bearer {self.token}":
                return h._send(
                    401, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
                )
            if u.path not in ("/2/tweets/search/recent", "/2/tweets/search/all"):
                return h._send(404, {"title": "Not Found", "detail": u.path})
            self.n_search += 1
            fault = self.faults.get(self.n_search)
            now = self.clock()
            if fault == "429" or now < self.blocked_until:
                if fault == "429":
                    self.blocked_until = now + self.reset_after
                return h._send(
                    429,
                    {"title": "Too Many Requests", "detail": "Too Many Requests", "status": 429},
                    {
                        "x-rate-limit-limit": 300,
                        "x-rate-limit-remaining": 0,
                        "x-rate-limit-reset": int(self.blocked_until),
                    },
                )
            if fault == "503":
                return h._send(503, {"title": "Service Unavailable", "detail": "Service Unavailable", "status": 503})
            query = q.get("query", "")
            m = re.fullmatch(r"conversation_id:(\d+)(?: min_faves:(\d+))?", query.strip())
            if not m:
                return h._send(400, {"errors": [{"message": f"Invalid query {query!r}"}], "title": "Invalid Request"})
            if m.group(2) is not None and self.reject_min_faves:
                return h._send(
                    400,
                    {
                        "errors": [
                            {
                                "parameters": {"query": [query]},
                                "message": "There were errors processing your request: Reference to "
                                "invalid operator 'min_faves'. Operator is not available "
                                "in current product or product packaging.",
                            }
                        ],
                        "title": "Invalid Request",
                        "detail": "One or more parameters to your request was invalid.",
                    },
                )
            mr = int(q.get("max_results", 10))
            if not 10 <= mr <= 100:
                return h._send(400, {"errors": [{"message": f"max_results must be 10..100, got {mr}"}]})
            conv = self.conversations.get(m.group(1))
            replies = [] if conv is None else conv["replies"]
            if m.group(2) is not None:
                replies = [r for r in replies if r["public_metrics"]["like_count"] >= int(m.group(2))]
            off = int(q["next_token"][1:]) if q.get("next_token") else 0
            chunk = replies[off : off + mr]
            page_no = off // mr + 1 if mr else 1
            self.posts_served += len(chunk)
            body = {
                "meta": {
                    "result_count": len(chunk),
                    "newest_id": chunk[0]["id"] if chunk else None,
                    "oldest_id": chunk[-1]["id"] if chunk else None,
                }
            }
            if chunk:
                body["data"] = chunk
            if off + mr < len(replies):
                body["meta"]["next_token"] = f"t{off + mr}"
            by_id = {conv["root"]["id"]: conv["root"], **{r["id"]: r for r in conv["replies"]}} if conv else {}
            if self.errors_page == page_no and chunk:
                body["errors"] = [
                    {
                        "resource_id": "999",
                        "title": "Not Found Error",
                        "resource_type": "tweet",
                        "detail": "Could not find tweet with referenced_tweets.id: [999].",
                        "type": "https://api.twitter.com/2/problems/resource-not-found",
                    }
                ]
            elif chunk:
                parents = {r["referenced_tweets"][0]["id"] for r in chunk}
                authors = sorted(
                    {r["author_id"] for r in chunk} | {by_id[p]["author_id"] for p in parents if p in by_id}
                )
                body["includes"] = {
                    "tweets": [by_id[p] for p in sorted(parents) if p in by_id],
                    "users": [
                        {
                            "id": a,
                            "username": f"user_{a}",
                            "name": a,
                            "public_metrics": {"followers_count": 100 + 37 * len(a) + int(a[1:] or 0) * 50},
                        }
                        for a in authors
                    ],
                }
            return h._send(
                200,
                body,
                {"x-rate-limit-limit": 300, "x-rate-limit-remaining": 299, "x-rate-limit-reset": int(now + 900)},
            )


APIFY_ITEM_FIELDS = (
    "id",
    "text",
    "createdAt",
    "likeCount",
    "retweetCount",
    "inReplyToId",
    "isReply",
    "author",
    "conversationId",
    "lang",
)


def apify_items(conv: dict) -> list[dict]:
    """The conversation as tweet-scraper items (root included, so replies to it join)."""
    out = []
    for t in [conv["root"]] + conv["replies"]:
        parent = (t.get("referenced_tweets") or [{}])[0].get("id")
        out.append(
            {
                "type": "tweet",
                "id": t["id"],
                "text": t["text"],
                "createdAt": t["created_at"],
                "likeCount": t["public_metrics"]["like_count"],
                "retweetCount": t["public_metrics"]["retweet_count"],
                "inReplyToId": parent,
                "isReply": parent is not None,
                "conversationId": t["conversation_id"],
                "lang": "en",
                "author": {"id": t["author_id"], "userName": f"user_{t['author_id']}", "followers": 1234},
            }
        )
    return out


class ApifyServer(_Server):
    def __init__(
        self,
        items: list[dict],
        *,
        token: str = "apify-test",
        polls_to_finish: int = 2,
        usage_usd: float = 0.0421,
        final_status: str = "SUCCEEDED",
    ) -> None:
        super().__init__()
        self.items, self.token, self.polls_to_finish = items, token, polls_to_finish
        self.usage_usd, self.final_status = usage_usd, final_status
        self.runs: dict[str, dict] = {}

    def _run(self, rid: str, actor: str, status: str) -> dict:
        done = status not in ("READY", "RUNNING")
        return {
            "id": rid,
            "actId": actor,
            "userId": "user1",
            "startedAt": "2026-11-30T10:00:00.000Z",
            "finishedAt": "2026-11-30T10:01:00.000Z" if done else None,
            "status": status,
            "statusMessage": f"Scraped {len(self.items) if done else len(self.items) // 2} tweets",
            "meta": {"origin": "API"},
            "stats": {"computeUnits": 0.01},
            "options": {"build": "latest", "timeoutSecs": 3600, "memoryMbytes": 1024, "diskMbytes": 2048},
            "buildId": "build1",
            "defaultKeyValueStoreId": "kvs1",
            "defaultDatasetId": f"ds-{rid}",
            "defaultRequestQueueId": "rq1",
            "usageTotalUsd": self.usage_usd if done else 0.01,
        }

    def handle(self, h, method, body):
        u = urlparse(h.path)
        u = u._replace(path=unquote(u.path))  # the client percent-encodes ids ("user~actor" → "user%7Eactor")
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        with self._lock:
            self.requests.append({"method": method, "path": u.path, "params": q, "body": body})
            if h.headers.get("authorization") != f"Bearer {self.token}":
                return h._send(
                    401, {"error": {"type": "token-not-valid", "message": "Authentication token is not valid."}}
                )
            m = re.fullmatch(r"/v2/(?:acts|actors)/([^/]+)/runs", u.path)
            if method == "POST" and m:
                rid = f"run{len(self.runs) + 1}"
                self.runs[rid] = {"actor": m.group(1), "polls": 0, "input": json.loads(body or b"{}"), "params": q}
                return h._send(201, {"data": self._run(rid, m.group(1), "RUNNING")})
            m = re.fullmatch(r"/v2/actor-runs/([^/]+)", u.path)
            if method == "GET" and m and m.group(1) in self.runs:
                r = self.runs[m.group(1)]
                r["polls"] += 1
                status = self.final_status if r["polls"] >= self.polls_to_finish else "RUNNING"
                return h._send(200, {"data": self._run(m.group(1), r["actor"], status)})
            m = re.fullmatch(r"/v2/datasets/ds-([^/]+)/items", u.path)
            if method == "GET" and m and m.group(1) in self.runs:
                off, lim = int(q.get("offset", 0)), int(q.get("limit", 10**9))
                chunk = self.items[off : off + lim]
                return h._send(
                    200,
                    chunk,
                    {
                        "x-apify-pagination-total": len(self.items),
                        "x-apify-pagination-offset": off,
                        "x-apify-pagination-count": len(chunk),
                        "x-apify-pagination-limit": lim,
                        "x-apify-pagination-desc": "false",
                    },
                )
            return h._send(404, {"error": {"type": "record-not-found", "message": f"{method} {u.path} not found"}})
