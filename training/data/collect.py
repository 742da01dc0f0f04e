"""Collect reply threads from the X API v2 search endpoint as raw response pages, one JSON page per line (what
``twarc2 search`` writes), which ``training.data.importers`` reads as ``x_api_v2``.

    python -m training.data.collect x --conversation-id 1790000000000000000 --max-posts 500 --out data/collect/c.jsonl
    python -m training.data.collect x --query "conversation_id:1790000000000000000" --min-faves 10 --max-posts 500 --out
    ...
    python -m training.data.collect min-faves-check --conversation-id 1790000000000000000 --min-faves 10 --max-posts 300
    python -m training.data.collect apify --actor apidojo/tweet-scraper --input input.json --out data/collect/a.jsonl

Why plain httpx and not tweepy / twarc: both build every URL from a hard-coded ``https://api.twitter.com`` and sleep on
rate limits with ``time.sleep``, so neither can be pointed at a local test server or fast-forwarded in a test. The code
they would save is the little below: a GET with a bearer token, ``next_token`` pagination and the rate-limit headers.

Budget: X bills per post read. A run reads at most ``max_posts`` posts (the ``data`` items of each page): every request
asks for ``max_results = min(100, posts left)`` and the run stops when fewer than 10 are left (the API's smallest page),
so it always stops before the cap. A cap below 10 is refused before any request.

Crash safety: a page is appended and fsynced, then the resume state (``<out>.state.json``: byte offset of the last
committed page, next_token per query) is replaced atomically. On start, bytes after the committed offset (a page cut
by a crash, or a page whose state was never written) are cut off and that page is fetched again: the JSONL never holds
a duplicate or half-written page, and the next run resumes from the last token.

Secrets: the bearer token comes from ``X_BEARER_TOKEN`` only (read by context.Settings in the app, by ``main`` here and
passed in); it is never written to the data dir, the state or a log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from common.jsonio import atomic_write
from training.data.apify import APIFY_URL, ApifyError, run_actor
from training.data.apify import TOKEN_ENV as APIFY_TOKEN_ENV
from training.data.importers import import_file

__all__ = [
    "EXPANSIONS",
    "MAX_PAGE",
    "MIN_PAGE",
    "TWEET_FIELDS",
    "USER_FIELDS",
    "X_API_URL",
    "CollectConfig",
    "CollectError",
    "CollectReport",
    "MinFavesCheck",
    "XCollector",
    "build_queries",
    "collect",
    "main",
    "min_faves_check",
    "x_token",
]

X_API_URL = "https://api.twitter.com"
TOKEN_ENV = "X_BEARER_TOKEN"
TWEET_FIELDS = (
    "attachments,author_id,conversation_id,created_at,entities,in_reply_to_user_id,lang,"
    "public_metrics,referenced_tweets"
)
EXPANSIONS = "author_id,referenced_tweets.id,referenced_tweets.id.author_id"
USER_FIELDS = "created_at,public_metrics,username"  # followers_count feeds the follower filter
MIN_PAGE, MAX_PAGE = 10, 100  # max_results bounds of /2/tweets/search/*


class CollectError(RuntimeError):
    """A collection that cannot go on; the message is one sentence for the UI / CLI (never carries the token)."""


@dataclass
class CollectConfig:
    """One collection run. Either conversation ids or a query (or both: the query runs after the conversations)."""

    out: Path = field(metadata={"help": "JSONL file of raw API pages; <out>.state.json holds the resume state"})
    conversation_ids: list[str] = field(default_factory=list, metadata={"help": "search `conversation_id:ID` for each"})
    query: str | None = field(
        default=None, metadata={"help": "a full X search query, e.g. `conversation_id:ID lang:en`"}
    )
    min_faves: int | None = field(
        default=None, metadata={"help": "append `min_faves:N` to every query (seed 0.3 check)"}
    )
    max_posts: int = field(
        default=1000, metadata={"help": "post cap for this run (posts read are what X bills); >= 10"}
    )
    archive: bool = field(
        default=False, metadata={"help": "full-archive search (/2/tweets/search/all) instead of the last 7 days"}
    )
    base_url: str = field(
        default=X_API_URL,
        metadata={"help": "API root (the app and the CLI pass X_API_BASE_URL; a local test server in tests)"},
    )
    max_retries: int = field(default=5, metadata={"help": "retries per request on 429 / 5xx / network errors"})


@dataclass
class CollectReport:
    out: str
    queries: list[str]
    posts_read: int  # this run (what this run costs)
    posts_read_total: int  # every run into this file
    pages: int  # pages written by this run
    pairs: int  # (tweet, reply) pairs the importer finds in the whole file
    stopped: str  # "done" | "cap"
    resumed: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def pairs_per_100_posts(self) -> float | None:
        return round(100.0 * self.pairs / self.posts_read_total, 1) if self.posts_read_total else None

    def summary(self) -> str:
        why = "stopped before the post cap" if self.stopped == "cap" else "all queries done"
        ppp = self.pairs_per_100_posts
        return (
            f"Read {self.posts_read} posts in {self.pages} pages ({why}{'; resumed' if self.resumed else ''}); "
            f"{self.posts_read_total} posts read into {self.out} so far, {self.pairs} pairs"
            + (f" = {ppp} pairs per 100 posts." if ppp is not None else ".")
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pairs_per_100_posts": self.pairs_per_100_posts}


def build_queries(cfg: CollectConfig) -> list[str]:
    qs = [f"conversation_id:{c.strip()}" for c in cfg.conversation_ids if c and c.strip()]
    if cfg.query and cfg.query.strip():
        qs.append(cfg.query.strip())
    if cfg.min_faves is not None:
        if int(cfg.min_faves) < 0:
            raise CollectError("min_faves must be 0 or more.")
        qs = [q if "min_faves:" in q else f"{q} min_faves:{int(cfg.min_faves)}" for q in qs]
    for c in cfg.conversation_ids:
        if c and c.strip() and not c.strip().isdigit():
            raise CollectError(f"{c.strip()!r} is not a conversation id (a tweet id is digits only).")
    if not qs:
        raise CollectError("Give at least one conversation id or a search query.")
    return qs


def x_token(token: str | None) -> str:
    """The caller's X_BEARER_TOKEN, or one sentence that names the variable for the admin."""
    tok = (token or "").strip()
    if not tok:
        raise CollectError(f"Set {TOKEN_ENV} to an X API v2 bearer token to collect replies.")
    return tok


def _api_error(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("detail", "title", "error"):
            if isinstance(body.get(key), str):
                return body[key]
        errs = body.get("errors")
        if isinstance(errs, list) and errs and isinstance(errs[0], dict):
            return str(errs[0].get("message") or errs[0].get("detail") or errs[0])
    return str(body)[:200]


class XCollector:
    """GET /2/tweets/search/{recent,all} with pagination and the rate-limit headers. ``clock`` / ``sleep`` are
    injectable so a test can fast-forward a 15-minute rate-limit window."""

    def __init__(
        self,
        token: str,
        *,
        base_url: str = X_API_URL,
        archive: bool = False,
        max_retries: int = 5,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        client: httpx.Client | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.path = "/2/tweets/search/all" if archive else "/2/tweets/search/recent"
        self.max_retries = max_retries
        self.clock, self.sleep = clock, sleep
        self.slept_s = 0.0
        self._not_before = 0.0
        self._client = client or httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s)
        self._auth = {"Authorization": f"Bearer {token}", "User-Agent": "reply-arena-collector"}

    def close(self) -> None:
        self._client.close()

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.sleep(seconds)
            self.slept_s += seconds

    def _reset_wait(self, resp: httpx.Response, attempt: int) -> float:
        reset = resp.headers.get("x-rate-limit-reset")
        try:
            return max(1.0, float(reset) - self.clock() + 1.0)
        except (TypeError, ValueError):
            return min(900.0, 5.0 * 2**attempt)

    def search_page(self, query: str, max_results: int, next_token: str | None) -> dict:
        params = {
            "query": query,
            "max_results": max_results,
            "tweet.fields": TWEET_FIELDS,
            "expansions": EXPANSIONS,
            "user.fields": USER_FIELDS,
        }
        if next_token:
            params["next_token"] = next_token
        last = ""
        for attempt in range(self.max_retries + 1):
            self._wait(self._not_before - self.clock())
            try:
                resp = self._client.get(self.path, params=params, headers=self._auth)
            except httpx.TransportError as exc:
                last = f"network error ({type(exc).__name__})"
                self._wait(min(60.0, 2.0 * 2**attempt))
                continue
            if resp.status_code == 200:
                if resp.headers.get("x-rate-limit-remaining") == "0":
                    self._not_before = self.clock() + self._reset_wait(resp, attempt)
                try:
                    return resp.json()
                except ValueError:
                    last = "a response that is not JSON"
                    continue
            if resp.status_code in (401, 403):
                raise CollectError(
                    f"X rejected {TOKEN_ENV} (HTTP {resp.status_code}); set it to a valid bearer token "
                    "of an app with search access."
                )
            try:
                body = resp.json()
            except ValueError:
                body = resp.text
            if resp.status_code == 429:
                last = "HTTP 429 (rate limited)"
                self._wait(self._reset_wait(resp, attempt))
                continue
            if resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                self._wait(min(60.0, 2.0 * 2**attempt))
                continue
            raise CollectError(f"X refused the query {query!r} (HTTP {resp.status_code}): {_api_error(body)}")
        raise CollectError(f"X did not answer after {self.max_retries + 1} tries (last: {last}); run again to resume.")


class _Store:
    """The JSONL output plus its resume state; see the module docstring for the commit protocol."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.state_path = self.out.with_name(self.out.name + ".state.json")
        self.warnings: list[str] = []
        if self.state_path.is_file():
            try:
                self.state = json.loads(self.state_path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise CollectError(f"{self.state_path} is not valid JSON; move it away to start over.") from exc
        elif self.out.is_file() and self.out.stat().st_size > 0:
            raise CollectError(f"{self.out} already exists and has no resume state; choose a new output file.")
        else:
            self.state = {"version": 1, "offset": 0, "posts_read_total": 0, "queries": {}}
        size = self.out.stat().st_size if self.out.is_file() else 0
        off = int(self.state.get("offset", 0))
        if size < off:
            raise CollectError(f"{self.out} is shorter than its resume state says; move both away to start over.")
        if size > off:
            with open(self.out, "r+b") as fh:
                fh.truncate(off)
                fh.flush()
                os.fsync(fh.fileno())
            self.warnings.append(
                f"dropped {size - off} bytes after the last committed page (a page cut by a crash); "
                "that page is fetched again"
            )

    @property
    def resumed(self) -> bool:
        return bool(self.state["queries"])

    def query(self, q: str) -> dict:
        return self.state["queries"].setdefault(q, {"next_token": None, "done": False, "posts": 0, "pages": 0})

    def commit(self, q: str, page: dict, n_posts: int, next_token: str | None) -> None:
        line = (json.dumps(page, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with open(self.out, "ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
            offset = fh.tell()
        st = self.query(q)
        st.update(next_token=next_token, done=next_token is None, posts=st["posts"] + n_posts, pages=st["pages"] + 1)
        self.state["offset"] = offset
        self.state["posts_read_total"] = int(self.state.get("posts_read_total", 0)) + n_posts
        self.save()

    def finish_query(self, q: str) -> None:
        self.query(q).update(next_token=None, done=True)
        self.save()

    def save(self) -> None:
        data = json.dumps(self.state, indent=1)
        atomic_write(self.state_path, lambda fh: fh.write(data))


def collect(
    cfg: CollectConfig,
    *,
    token: str | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] | None = None,
    client: httpx.Client | None = None,
) -> CollectReport:
    """Run (or resume) a collection. Raises CollectError with one sentence; pages already committed stay."""
    if int(cfg.max_posts) < MIN_PAGE:
        raise CollectError(
            f"The post cap is {int(cfg.max_posts)}; it must be at least {MIN_PAGE} "
            f"(X returns {MIN_PAGE} to {MAX_PAGE} posts per page), so nothing was requested."
        )
    queries = build_queries(cfg)
    token = x_token(token)
    store = _Store(Path(cfg.out))
    resumed = store.resumed
    api = XCollector(
        token,
        base_url=cfg.base_url,
        archive=cfg.archive,
        max_retries=cfg.max_retries,
        clock=clock,
        sleep=sleep,
        client=client,
    )
    read = pages = 0
    stopped = "done"
    warnings = list(store.warnings)
    try:
        for q in queries:
            st = store.query(q)
            while not st["done"]:
                left = int(cfg.max_posts) - read
                if left < MIN_PAGE:
                    stopped = "cap"
                    break
                page = api.search_page(q, min(MAX_PAGE, left), st["next_token"])
                data = page.get("data")
                n = len(data) if isinstance(data, list) else (1 if isinstance(data, dict) else 0)
                nxt = (page.get("meta") or {}).get("next_token") if isinstance(page.get("meta"), dict) else None
                if isinstance(page.get("errors"), list) and page["errors"]:
                    warnings.append(
                        f"{q}: page {st['pages'] + 1} carries {len(page['errors'])} API error(s), "
                        f"e.g. {_api_error({'errors': page['errors']})[:120]}"
                    )
                if n == 0 and not page.get("errors") and not nxt and st["pages"] > 0:
                    store.finish_query(q)  # an empty last page: nothing worth a line
                    break
                store.commit(q, page, n, nxt)
                read += n
                pages += 1
                if progress:
                    progress(f"{q}: page {st['pages']}, {n} posts ({read}/{cfg.max_posts} this run)")
            if stopped == "cap":
                break
    finally:
        api.close()
    if api.slept_s:
        warnings.append(f"waited {api.slept_s:.0f} s for X rate limits / retries")
    pairs = 0
    if store.out.is_file() and store.out.stat().st_size:
        res = import_file(store.out, fmt="x_api_v2")
        pairs = res.report.n_pairs
    return CollectReport(
        out=str(store.out),
        queries=queries,
        posts_read=read,
        posts_read_total=int(store.state.get("posts_read_total", 0)),
        pages=pages,
        pairs=pairs,
        stopped=stopped,
        resumed=resumed,
        warnings=warnings,
    )


@dataclass
class MinFavesCheck:
    conversation_id: str
    min_faves: int
    without: CollectReport
    with_filter: CollectReport | None
    error: str | None = None

    @property
    def reduced(self) -> bool | None:
        return None if self.with_filter is None else self.with_filter.posts_read_total < self.without.posts_read_total

    def summary(self) -> str:
        a = self.without
        capped = (
            " (the run without the filter hit the post cap, so its count is a lower bound)"
            if a.stopped == "cap"
            else ""
        )
        if self.with_filter is None:
            return (
                f"Without min_faves: {a.posts_read_total} posts, {a.pairs} pairs; with min_faves:{self.min_faves} "
                f"X refused the query ({self.error}), so the filter cannot be used on this plan."
            )
        b = self.with_filter
        if self.reduced:
            pct = 100.0 * (a.posts_read_total - b.posts_read_total) / max(1, a.posts_read_total)
            verdict = (
                f"min_faves:{self.min_faves} reduced the posts read from {a.posts_read_total} to "
                f"{b.posts_read_total} (−{pct:.0f}%)"
            )
        else:
            verdict = (
                f"min_faves:{self.min_faves} did not reduce the posts read ({a.posts_read_total} without, "
                f"{b.posts_read_total} with)"
            )
        return f"{verdict} for conversation {self.conversation_id}; pairs {a.pairs} → {b.pairs}{capped}."


def min_faves_check(
    conversation_id: str,
    min_faves: int,
    max_posts: int,
    out_dir: Path,
    *,
    base_url: str = X_API_URL,
    token: str | None = None,
    archive: bool = False,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] | None = None,
) -> MinFavesCheck:
    """The seed's step 0.3: the same conversation with and without ``min_faves``; does the filter cut posts read?"""
    cid = str(conversation_id).strip()
    if int(max_posts) < MIN_PAGE:
        raise CollectError(
            f"The post cap is {int(max_posts)}; it must be at least {MIN_PAGE}, so nothing was requested."
        )
    token = x_token(token)
    folder = Path(out_dir) / f"min_faves_check_{cid}_{int(min_faves)}_{int(time.time())}"
    common: dict[str, Any] = dict(max_posts=max_posts, archive=archive, base_url=base_url or X_API_URL)
    without = collect(
        CollectConfig(out=folder / "without.jsonl", conversation_ids=[cid], **common),
        token=token,
        clock=clock,
        sleep=sleep,
        progress=progress,
    )
    try:
        with_f = collect(
            CollectConfig(
                out=folder / f"min_faves_{int(min_faves)}.jsonl",
                conversation_ids=[cid],
                min_faves=int(min_faves),
                **common,
            ),
            token=token,
            clock=clock,
            sleep=sleep,
            progress=progress,
        )
    except CollectError as exc:
        if "refused the query" not in str(exc):
            raise
        return MinFavesCheck(cid, int(min_faves), without, None, str(exc).split(": ", 1)[-1])
    return MinFavesCheck(cid, int(min_faves), without, with_f)


def _print_report(rep: CollectReport) -> None:
    print(rep.summary())
    for w in rep.warnings:
        print(f"  note: {w}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.data.collect",
        description="Collect replies from the X API v2 or an Apify actor into raw JSONL.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    x = sub.add_parser("x", help="X API v2 search (token from X_BEARER_TOKEN)")
    x.add_argument("--conversation-id", action="append", default=[], help="repeatable")
    x.add_argument("--query")
    x.add_argument("--min-faves", type=int)
    x.add_argument("--max-posts", type=int, required=True, help="post cap for this run (>= 10)")
    x.add_argument("--out", type=Path, required=True)
    x.add_argument("--archive", action="store_true", help="full-archive search (/2/tweets/search/all)")
    x.add_argument("--base-url", default=os.environ.get("X_API_BASE_URL", X_API_URL))
    mf = sub.add_parser("min-faves-check", help="same conversation with and without min_faves (seed 0.3)")
    mf.add_argument("--conversation-id", required=True)
    mf.add_argument("--min-faves", type=int, required=True)
    mf.add_argument("--max-posts", type=int, required=True)
    mf.add_argument("--out-dir", type=Path, default=Path(os.environ.get("DATA_DIR", "data")) / "collect")
    mf.add_argument("--archive", action="store_true")
    mf.add_argument("--base-url", default=os.environ.get("X_API_BASE_URL", X_API_URL))
    a = sub.add_parser("apify", help="run an Apify actor and download its dataset (token from APIFY_TOKEN)")
    a.add_argument("--actor", required=True, help="actor id, e.g. apidojo/tweet-scraper")
    a.add_argument("--input", type=Path, help="JSON file with the actor input")
    a.add_argument("--out", type=Path, required=True)
    a.add_argument("--max-items", type=int, help="ask the actor to stop (and bill) at this many items")
    a.add_argument("--base-url", default=os.environ.get("APIFY_API_URL", APIFY_URL))
    args = ap.parse_args(argv)
    try:
        if args.cmd == "x":
            cfg = CollectConfig(
                out=args.out,
                conversation_ids=args.conversation_id,
                query=args.query,
                min_faves=args.min_faves,
                max_posts=args.max_posts,
                archive=args.archive,
                base_url=args.base_url,
            )
            _print_report(collect(cfg, token=os.environ.get(TOKEN_ENV), progress=lambda m: print(m, file=sys.stderr)))
        elif args.cmd == "min-faves-check":
            res = min_faves_check(
                args.conversation_id,
                args.min_faves,
                args.max_posts,
                args.out_dir,
                base_url=args.base_url,
                token=os.environ.get(TOKEN_ENV),
                archive=args.archive,
                progress=lambda m: print(m, file=sys.stderr),
            )
            print(res.summary())
        else:
            run_input = json.loads(args.input.read_text(encoding="utf-8")) if args.input else {}
            rep = run_actor(
                args.actor,
                run_input,
                args.out,
                token=os.environ.get(APIFY_TOKEN_ENV),
                base_url=args.base_url,
                max_items=args.max_items,
                progress=lambda m: print(m, file=sys.stderr),
            )
            print(rep.summary())
    except (CollectError, ApifyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"error: {str(exc).splitlines()[0][:300]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
