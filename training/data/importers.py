"""Import real X/Twitter exports into normalized (tweet, reply) pairs.

Supported inputs (auto-detected from the container and the first record):

* ``x_api_v2``   – X API v2 search/lookup responses (``data`` + ``includes.users`` / ``includes.tweets``),
                   one pretty-printed response, a JSON array of responses, JSONL of responses (twarc2)
                   or flat v2 tweet objects;
* ``x_api_v1.1`` – v1.1 statuses (JSONL / JSON array, or ``{"statuses": [...]}`` search pages);
* ``apify``      – the Apify "tweet-scraper" dataset export (JSON array or JSONL);
* ``sample``     – our own already-joined pairs (``assets/sample_pairs.jsonl``);
* ``mapped`` / ``csv`` – generic JSON(L)/CSV with a column mapping {our field: their field}; rows are
                   either already-joined pairs (``tweet`` + ``reply``) or single tweets to join
                   (``id`` + ``text`` + ``in_reply_to_id``).

Memory: everything is streamed (JSONL line by line, JSON arrays element by element with an incremental
``raw_decode`` parser, CSV with the csv module). For joining we keep one compact tuple per tweet
(text, created_at, author) and one per reply, never the raw records, so a 1 GB export needs roughly
the size of its *text*, not of its JSON.

Normalization applied to every API format (documented because it changes lengths):
HTML entities are unescaped (``&amp;`` → ``&``), the t.co link X appends for attached media is removed
(``has_media`` records it instead), and the leading ``@handle`` mentions X adds to replies are stripped
(X does not count them toward the 280 characters either). Threads (an author replying to their own
tweet) and retweets are skipped and counted in the report.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import html
import io
import itertools
import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

from common.decompression import CappedDecompression
from common.jsonio import atomic_write
from common.text import URL_RE

from .pairs import Pair, opt_str, to_bool, to_int

__all__ = [
    "ImportReport",
    "ImportResult",
    "URL_RE",
    "contains_url",
    "normalize_text",
    "detect_format",
    "import_file",
    "read_pairs",
    "write_pairs_jsonl",
]

_WS_RE = re.compile(r"\s+")
_LEADING_MENTIONS_RE = re.compile(r"^(?:\s*@\w{1,50})+\s*")

_MAX_VALUE_CHARS = 64 * 1024 * 1024  # one array element (a tweet, a v2 page) larger than this is treated as malformed
# A single top-level object (one pretty-printed API response, at most a page of tweets) is parsed whole, so it is
# held in memory: real responses are well under a megabyte, a bigger one is a broken file or an attack.
_MAX_OBJECT_CHARS = 64 * 1024 * 1024
_CHUNK_CHARS = 1 << 20


def contains_url(text: str) -> bool:
    """True if the text has a link or a bare domain (the seed's 'no URLs' rule)."""
    return URL_RE.search(text or "") is not None


def normalize_text(text: str) -> str:
    """Key for exact-duplicate detection: casefold + collapsed whitespace."""
    return _WS_RE.sub(" ", (text or "").casefold()).strip()


@dataclass
class ImportReport:
    """What was read and what could not be joined, for the Data tab and the CLI."""

    path: str
    format: str
    container: str
    n_records: int = 0  # top-level records read (lines, array elements, CSV rows)
    n_tweets: int = 0  # tweet objects seen (API formats; includes referenced parents)
    n_replies: int = 0
    n_pairs: int = 0
    n_missing_parent: int = 0
    missing_parent: list[str] = field(default_factory=list)  # reply ids whose parent is not in the export
    skipped: dict[str, int] = field(default_factory=dict)  # retweets, self_replies, duplicate_ids
    warnings: list[str] = field(default_factory=list)

    def to_dict(self, max_ids: int = 50) -> dict[str, Any]:
        d = asdict(self)
        d["missing_parent"] = self.missing_parent[:max_ids]
        return d


@dataclass
class ImportResult:
    pairs: list[Pair]
    report: ImportReport


# --------------------------------------------------------------------------- value coercion


def _parse_time(v: Any) -> int | None:
    """Epoch seconds from ISO 8601, Twitter's 'Wed Oct 10 20:19:24 +0000 2018', or epoch s/ms."""
    if v is None or v == "":
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        x = float(v)
        return int(x / 1000 if x > 1e11 else x)
    s = str(v).strip()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return _parse_time(float(s))
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        try:
            dt = datetime.strptime(s, "%a %b %d %H:%M:%S %z %Y")
        except ValueError:
            raise ValueError(
                f"unrecognized timestamp {v!r} (expected ISO 8601 or 'Wed Oct 10 20:19:24 +0000 2018')"
            ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


def _clean_text(text: str, remove: Iterable[str] = ()) -> str:
    t = html.unescape(text or "")
    for u in remove:
        if u:
            t = t.replace(u, " ")
    t = _LEADING_MENTIONS_RE.sub("", t)
    return t.strip()


# --------------------------------------------------------------------------- streaming readers


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        capped = CappedDecompression(gzip.open(path, "rb"), path.name, path.stat().st_size)
        return io.TextIOWrapper(capped, encoding="utf-8-sig", newline="")  # type: ignore[return-value]
    return open(path, "r", encoding="utf-8-sig", newline="")


def _readline(fh: io.TextIOBase, name: str, lineno: int) -> str:
    """One JSONL line, refusing a "line" longer than one record can be (a file with no newlines at all)."""
    line = fh.readline(_MAX_VALUE_CHARS + 1)
    if len(line) > _MAX_VALUE_CHARS:
        raise ValueError(
            f"{name}: line {lineno} is longer than {_MAX_VALUE_CHARS >> 20} MB; "
            "expected one JSON object per line (JSONL)"
        )
    return line


class _JsonStream:
    """Incremental parser for a top-level JSON array, or for whitespace-separated JSON values.

    Reads ~1 MB chunks and decodes one value at a time with ``json.JSONDecoder.raw_decode``, dropping
    what was consumed, so memory is one chunk plus one value regardless of the file size.
    """

    _WS = re.compile(r"[ \t\r\n]*")

    def __init__(
        self, read: Callable[[int], str], prefix: str, name: str, max_value_chars: int = _MAX_VALUE_CHARS
    ) -> None:
        self._read = read
        self._prefix = prefix
        self._name = name
        self._max = max_value_chars
        self._dec = json.JSONDecoder()
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line = 1  # line number at self.pos
        self.offset = 0  # absolute char offset at self.pos

    def _fill(self, size: int = _CHUNK_CHARS) -> bool:
        chunk, self._prefix = (self._prefix, "") if self._prefix else (self._read(size), "")
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos :] + chunk
        self.pos = 0
        return True

    def _advance(self, new_pos: int) -> None:
        self.line += self.buf.count("\n", self.pos, new_pos)
        self.offset += new_pos - self.pos
        self.pos = new_pos

    def where(self, pos: int | None = None) -> str:
        line = self.line if pos is None else self.line + self.buf.count("\n", self.pos, pos)
        off = self.offset if pos is None else self.offset + (pos - self.pos)
        return f"line {line} (char {off})"

    def peek(self) -> str:
        """Next non-whitespace char, or '' at end of file."""
        while True:
            self._advance(self._WS.match(self.buf, self.pos).end())  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def take(self) -> None:
        self._advance(self.pos + 1)

    def value(self, expected: str) -> Any:
        if not self.peek():
            raise ValueError(
                f"{self._name}: {self.where()}: unexpected end of file (truncated JSON?); expected {expected}"
            )
        while True:
            try:
                val, end = self._dec.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # Usually the value is just cut by the chunk boundary: read more and retry, up to a cap.
                # Read as much again as is pending, so a large value costs O(size), not O(size²) re-parses.
                pending = len(self.buf) - self.pos
                if not self.eof and pending < self._max and self._fill(max(_CHUNK_CHARS, pending)):
                    continue
                if not self.eof:
                    raise ValueError(
                        f"{self._name}: {self.where()}: one JSON value is larger than {self._max >> 20} MB; "
                        "an export holds many small records, so nothing was imported."
                    ) from None
                cap = ""
                raise ValueError(
                    f"{self._name}: {self.where(exc.pos)}: invalid JSON ({exc.msg}){cap}; expected {expected}"
                ) from None
            if end == len(self.buf) and not self.eof and not isinstance(val, (dict, list, str)):
                if self._fill():  # a bare number may continue in the next chunk
                    continue
            self._advance(end)
            return val

    def iter_array(self) -> Iterator[tuple[Any, str]]:
        if self.peek() != "[":
            raise ValueError(f"{self._name}: {self.where()}: expected '[' to start a JSON array")
        self.take()
        if self.peek() == "]":
            self.take()
        else:
            while True:
                self.peek()
                loc = self.where()
                yield self.value("a JSON array of objects"), loc
                c = self.peek()
                if c == ",":
                    self.take()
                    continue
                if c == "]":
                    self.take()
                    break
                found = repr(c) if c else "end of file (truncated array?)"
                raise ValueError(
                    f"{self._name}: {self.where()}: expected ',' or ']' after an array element, found {found}"
                )
        c = self.peek()
        if c:
            raise ValueError(f"{self._name}: {self.where()}: unexpected data {c!r} after the top-level JSON array")

    def iter_values(self) -> Iterator[tuple[Any, str]]:
        while self.peek():
            loc = self.where()
            yield self.value("JSON objects (one response or one tweet each)"), loc


def _iter_json_records(path: Path, name: str) -> tuple[str, Iterator[tuple[Any, str]]]:
    """Return (container, iterator of (record, location)). Sniffs JSONL vs JSON array vs pretty JSON."""
    fh = _open_text(path)
    try:
        head = fh.read(1)
        while head and head.isspace():
            head = fh.read(1)
    except UnicodeDecodeError as exc:
        fh.close()
        raise ValueError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not head:
        fh.close()
        raise ValueError(f"{name}: file is empty; expected JSON, JSONL or CSV records")

    def read(n: int) -> str:
        try:
            return fh.read(n)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{name}: not UTF-8 text ({exc.reason})") from None

    def stream(prefix: str, array: bool) -> Iterator[tuple[Any, str]]:
        try:
            if array:  # elements are tweets/pages: a huge one means a broken file, fail early
                yield from _JsonStream(read, prefix, name).iter_array()
            else:  # one pretty-printed response is parsed whole; allow a big one
                yield from _JsonStream(read, prefix, name, max_value_chars=_MAX_OBJECT_CHARS).iter_values()
        finally:
            fh.close()

    if head == "[":
        return "json_array", stream(head, array=True)
    if head != "{":
        fh.close()
        raise ValueError(f"{name}: line 1: expected a JSON object/array or a CSV header, found {head!r}")

    # '{': JSONL if the first line is a complete object, else pretty-printed JSON value(s).
    try:
        first_line = head + fh.readline(_MAX_VALUE_CHARS)  # bounded: a file may be one huge object with no newline
    except UnicodeDecodeError as exc:
        fh.close()
        raise ValueError(f"{name}: not UTF-8 text ({exc.reason})") from None
    try:
        first = json.loads(first_line)
        is_jsonl = isinstance(first, dict)
    except json.JSONDecodeError:
        is_jsonl = False
    if not is_jsonl:
        return "json", stream(first_line, array=False)

    def jsonl() -> Iterator[tuple[Any, str]]:
        try:
            yield first, "line 1"
            for n in itertools.count(2):
                line = _readline(fh, name, n)
                if not line:
                    break
                s = line.strip()
                if not s:
                    continue
                try:
                    obj = json.loads(s)
                except json.JSONDecodeError as exc:
                    raise ValueError(
                        f"{name}: line {n}, column {exc.colno}: invalid JSON ({exc.msg}); expected one JSON object per "
                        "line (JSONL)"
                    ) from None
                if not isinstance(obj, dict):
                    raise ValueError(
                        f"{name}: line {n}: expected a JSON object per line (JSONL), got {type(obj).__name__}"
                    )
                yield obj, f"line {n}"
        except UnicodeDecodeError as exc:
            raise ValueError(f"{name}: not UTF-8 text ({exc.reason})") from None
        finally:
            fh.close()

    return "jsonl", jsonl()


def _iter_csv_records(path: Path, name: str) -> Iterator[tuple[dict[str, Any], str]]:
    with _open_text(path) as fh:
        try:
            header = fh.readline()
            delim = "\t" if header.count("\t") > header.count(",") else ","
            reader = csv.DictReader(itertools.chain([header], fh), delimiter=delim)
            for row in reader:
                if None in row:
                    raise ValueError(
                        f"{name}: line {reader.line_num}: more values than header columns "
                        f"({len(reader.fieldnames or [])})"
                    )
                if not any((v or "").strip() for v in row.values()):
                    continue
                yield row, f"line {reader.line_num}"
        except UnicodeDecodeError as exc:
            raise ValueError(f"{name}: not UTF-8 text ({exc.reason})") from None
        except csv.Error as exc:
            raise ValueError(f"{name}: invalid CSV ({exc})") from None


def _sniff_container(path: Path) -> str:
    with _open_text(path) as fh:
        try:
            head = fh.read(4096)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    s = head.lstrip()
    if not s:
        raise ValueError(f"{path}: file is empty; expected JSON, JSONL or CSV records")
    if s[0] in "[{":
        return "json"
    suffixes = [x.lower() for x in path.suffixes]
    first_line = s.splitlines()[0]
    if ".csv" in suffixes or ".tsv" in suffixes or "," in first_line or "\t" in first_line:
        return "csv"
    raise ValueError(
        f"{path}: line 1: unknown format; expected JSON (X API v2/v1.1, Apify), JSONL, or CSV with a header row"
    )


# --------------------------------------------------------------------------- record formats


def _detect_record(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    keys = obj.keys()
    if isinstance(obj.get("data"), (list, dict)) or isinstance(obj.get("includes"), dict):
        return "x_api_v2"
    if isinstance(obj.get("meta"), dict) and "result_count" in obj["meta"]:
        return "x_api_v2"
    if isinstance(obj.get("statuses"), list) or "id_str" in keys or "favorite_count" in keys or "full_text" in keys:
        return "x_api_v1.1"
    if isinstance(obj.get("user"), dict) and "followers_count" in obj["user"]:
        return "x_api_v1.1"
    author = obj.get("author")
    if any(
        k in keys for k in ("likeCount", "retweetCount", "isReply", "inReplyToId", "fullText", "extendedEntities")
    ) or (isinstance(author, dict) and ("followers" in author or "userName" in author)):
        return "apify"
    if (
        "public_metrics" in keys
        or "author_id" in keys
        or "referenced_tweets" in keys
        or "edit_history_tweet_ids" in keys
    ):
        return "x_api_v2"
    if "tweet" in keys and "reply" in keys:
        return "sample"
    return None


@dataclass(slots=True)
class _Tweet:
    id: str
    text: str
    created: int | None
    author_id: str | None
    parent_id: str | None = None
    is_reply: bool = False
    is_retweet: bool = False
    likes: int = 0
    retweets: int = 0
    followers: int | None = None
    has_media: bool = False
    has_url: bool = False
    lang: str | None = None
    conversation_id: str | None = None


class _Joiner:
    """Joins replies to parents with compact per-tweet tuples (never the raw records)."""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        self.parents: dict[str, tuple[str, int | None, str | None]] = {}
        self.replies: list[tuple[Any, ...]] = []
        self.reply_ids: set[str] = set()
        self.followers: dict[str, int] = {}
        self.n_no_time = 0

    def skip(self, reason: str) -> None:
        self.report.skipped[reason] = self.report.skipped.get(reason, 0) + 1

    def add_user(self, user_id: Any, followers: Any) -> None:
        f = to_int(followers)
        if user_id is not None and f is not None:
            self.followers[str(user_id)] = f

    def add_parent(self, t: _Tweet) -> None:
        self.report.n_tweets += 1
        if not t.is_retweet:
            self.parents[t.id] = (t.text, t.created, t.author_id)

    def add(self, t: _Tweet) -> None:
        self.add_parent(t)
        if t.is_retweet:
            self.skip("retweets")
            return
        if not t.is_reply:
            return
        if t.id in self.reply_ids:
            self.skip("duplicate_ids")
            return
        self.reply_ids.add(t.id)
        self.report.n_replies += 1
        if t.author_id is not None and t.followers is not None:
            self.followers.setdefault(t.author_id, t.followers)
        self.replies.append(
            (
                t.id,
                t.parent_id,
                t.text,
                t.created,
                t.author_id,
                t.likes,
                t.retweets,
                t.followers,
                t.has_media,
                t.has_url,
                t.lang,
                t.conversation_id,
            )
        )

    def finish(self) -> list[Pair]:
        pairs: list[Pair] = []
        rep = self.report
        for rid, pid, text, created, author, likes, rts, followers, media, url, lang, conv in self.replies:
            parent = self.parents.get(pid) if pid else None
            if parent is None:
                rep.missing_parent.append(rid)
                continue
            ptext, pcreated, pauthor = parent
            if author is not None and author == pauthor:
                self.skip("self_replies")
                continue
            if followers is None and author is not None:
                followers = self.followers.get(author)
            diff = created - pcreated if created is not None and pcreated is not None else None
            if diff is None:
                self.n_no_time += 1
            pairs.append(
                Pair(
                    pair_id=rid,
                    tweet_id=pid,
                    tweet=ptext,
                    reply=text,
                    likes=likes,
                    retweets=rts,
                    author_followers=followers,
                    time_diff_seconds=diff,
                    has_media=media,
                    has_url=url,
                    lang=lang,
                    conversation_id=conv,
                )
            )
        self.replies = []
        rep.n_missing_parent = len(rep.missing_parent)
        if rep.n_missing_parent:
            rep.warnings.append(
                f"{rep.n_missing_parent} replies have no parent tweet in the export (ids in missing_parent); "
                "fetch the parents (v2: expansions=referenced_tweets.id) to use them"
            )
        if rep.skipped.get("self_replies"):
            rep.warnings.append(f"{rep.skipped['self_replies']} self-replies (thread continuations) skipped")
        if self.n_no_time:
            rep.warnings.append(
                f"{self.n_no_time} pairs lack created_at on the reply or parent; time_diff_seconds is unknown"
            )
        n_no_f = sum(1 for p in pairs if p.author_followers is None)
        if n_no_f:
            rep.warnings.append(
                f"{n_no_f} pairs lack the reply author's follower count (v2: expansions=author_id, "
                "user.fields=public_metrics)"
            )
        return pairs


def _need(obj: Mapping[str, Any], key: str, where: str, what: str) -> Any:
    v = obj.get(key)
    if v is None or v == "":
        raise ValueError(f"{where}: missing required field '{key}' in {what} (keys present: {sorted(obj)[:20]})")
    return v


def _entity_urls(ent: Any) -> list[dict[str, Any]]:
    if isinstance(ent, dict) and isinstance(ent.get("urls"), list):
        return [u for u in ent["urls"] if isinstance(u, dict)]
    return []


def _media_list(*containers: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in containers:
        if isinstance(c, dict) and isinstance(c.get("media"), list):
            out.extend(m for m in c["media"] if isinstance(m, dict))
        elif isinstance(c, list):
            out.extend(m for m in c if isinstance(m, dict))
    return out


def _is_media_url(u: Mapping[str, Any]) -> bool:
    disp = str(u.get("display_url") or "")
    exp = str(u.get("expanded_url") or "")
    return (
        bool(u.get("media_key"))
        or disp.startswith(("pic.twitter.com", "pic.x.com"))
        or (re.search(r"(twitter|x)\.com/[^/]+/status/\d+/(photo|video)/", exp) is not None)
    )


def _v2_tweet(t: Mapping[str, Any], where: str) -> _Tweet:
    tid = str(_need(t, "id", where, "X API v2 tweet"))
    note = t.get("note_tweet")
    raw_text = note["text"] if isinstance(note, dict) and note.get("text") else t.get("text")
    if raw_text is None:
        raise ValueError(f"{where}: missing required field 'text' in X API v2 tweet {tid}")
    urls = _entity_urls(t.get("entities"))
    media_urls = [u.get("url", "") for u in urls if _is_media_url(u)]
    attachments = t.get("attachments") if isinstance(t.get("attachments"), dict) else {}
    has_media = bool(attachments.get("media_keys")) or bool(media_urls)
    text = _clean_text(str(raw_text), media_urls)
    refs = t.get("referenced_tweets") or []
    parent_id = None
    is_rt = False
    for r in refs if isinstance(refs, list) else []:
        if isinstance(r, dict) and r.get("type") == "replied_to" and r.get("id") is not None:
            parent_id = str(r["id"])
        if isinstance(r, dict) and r.get("type") == "retweeted":
            is_rt = True
    pm = t.get("public_metrics") if isinstance(t.get("public_metrics"), dict) else {}
    author = t.get("author") if isinstance(t.get("author"), dict) else None  # twarc2 "flattened" tweets
    followers = None
    if author is not None:
        apm = author.get("public_metrics") if isinstance(author.get("public_metrics"), dict) else {}
        followers = to_int(apm.get("followers_count"))
    return _Tweet(
        id=tid,
        text=text,
        created=_parse_time(t.get("created_at")),
        author_id=opt_str(t.get("author_id")),
        parent_id=parent_id,
        is_reply=parent_id is not None or t.get("in_reply_to_user_id") is not None,
        is_retweet=is_rt,
        likes=to_int(pm.get("like_count")) or 0,
        retweets=to_int(pm.get("retweet_count")) or 0,
        followers=followers,
        has_media=has_media,
        has_url=any(not _is_media_url(u) for u in urls) or contains_url(text),
        lang=opt_str(t.get("lang")),
        conversation_id=opt_str(t.get("conversation_id")),
    )


def _handle_v2(obj: Mapping[str, Any], where: str, j: _Joiner) -> None:
    if "data" not in obj and "includes" not in obj and ("id" in obj and "text" in obj):
        obj = {"data": [obj]}  # a flat v2 tweet (JSON array / JSONL of tweet objects)
    if isinstance(obj.get("errors"), list) and not obj.get("data"):
        j.report.warnings.append(f"{where}: response has only 'errors' ({len(obj['errors'])}); skipped")
    inc = obj.get("includes") if isinstance(obj.get("includes"), dict) else {}
    for u in inc.get("users") or []:
        if isinstance(u, dict):
            pm = u.get("public_metrics") if isinstance(u.get("public_metrics"), dict) else {}
            j.add_user(u.get("id"), pm.get("followers_count"))
    for pt in inc.get("tweets") or []:
        if isinstance(pt, dict):
            j.add_parent(_v2_tweet(pt, f"{where} includes.tweets"))
    data = obj.get("data")
    items = [data] if isinstance(data, dict) else (data or [])
    for i, t in enumerate(items):
        if not isinstance(t, dict):
            raise ValueError(f"{where}: data[{i}]: expected a tweet object, got {type(t).__name__}")
        tw = _v2_tweet(t, f"{where} data[{i}]")
        if isinstance(t.get("author"), dict):
            a = t["author"]
            apm = a.get("public_metrics") if isinstance(a.get("public_metrics"), dict) else {}
            j.add_user(a.get("id"), apm.get("followers_count"))
        for r in t.get("referenced_tweets") or []:  # twarc2 flattened: parents embedded in place
            if isinstance(r, dict) and r.get("type") == "replied_to" and r.get("text") is not None:
                j.add_parent(_v2_tweet(r, f"{where} data[{i}].referenced_tweets"))
        j.add(tw)


def _v1_tweet(t: Mapping[str, Any], where: str) -> _Tweet:
    ext = t.get("extended_tweet") if isinstance(t.get("extended_tweet"), dict) else {}
    tid = t.get("id_str") or t.get("id")
    if tid is None:
        raise ValueError(f"{where}: missing required field 'id_str' in X API v1.1 status")
    tid = str(tid)
    raw_text = ext.get("full_text") or t.get("full_text") or t.get("text")
    if raw_text is None:
        raise ValueError(f"{where}: missing required field 'full_text'/'text' in X API v1.1 status {tid}")
    ents = ext.get("entities") or t.get("entities") or {}
    xents = ext.get("extended_entities") or t.get("extended_entities") or {}
    media = _media_list(xents, ents)
    media_urls = [str(m.get("url") or "") for m in media]
    urls = _entity_urls(ents)
    text = _clean_text(str(raw_text), media_urls)
    user = t.get("user") if isinstance(t.get("user"), dict) else {}
    parent = t.get("in_reply_to_status_id_str") or t.get("in_reply_to_status_id")
    return _Tweet(
        id=tid,
        text=text,
        created=_parse_time(t.get("created_at")),
        author_id=opt_str(user.get("id_str") or user.get("id")),
        parent_id=str(parent) if parent is not None else None,
        is_reply=parent is not None,
        is_retweet="retweeted_status" in t,
        likes=to_int(t.get("favorite_count")) or 0,
        retweets=to_int(t.get("retweet_count")) or 0,
        followers=to_int(user.get("followers_count")),
        has_media=bool(media),
        has_url=any(not _is_media_url(u) for u in urls) or contains_url(text),
        lang=opt_str(t.get("lang")),
        conversation_id=opt_str(t.get("conversation_id_str")),
    )


def _handle_v1(obj: Mapping[str, Any], where: str, j: _Joiner) -> None:
    paged = isinstance(obj.get("statuses"), list)
    items = obj["statuses"] if paged else [obj]
    for i, t in enumerate(items):
        w = f"{where} statuses[{i}]" if paged else where
        if not isinstance(t, dict):
            raise ValueError(f"{w}: expected a status object, got {type(t).__name__}")
        j.add(_v1_tweet(t, w))


def _handle_apify(t: Mapping[str, Any], where: str, j: _Joiner) -> None:
    tid = str(_need(t, "id", where, "Apify tweet"))
    raw_text = t.get("fullText") or t.get("full_text") or t.get("text")
    if raw_text is None:
        raise ValueError(f"{where}: missing required field 'text'/'fullText' in Apify tweet {tid}")
    ents = t.get("entities") if isinstance(t.get("entities"), dict) else {}
    media = _media_list(t.get("extendedEntities"), ents)
    if isinstance(t.get("media"), list):
        media.extend(m if isinstance(m, dict) else {"url": ""} for m in t["media"])
    media_urls = [str(m.get("url") or "") for m in media]
    urls = _entity_urls(ents)
    text = _clean_text(str(raw_text), media_urls)
    author = t.get("author") if isinstance(t.get("author"), dict) else {}
    parent = t.get("inReplyToId") or t.get("inReplyToStatusId")
    j.add(
        _Tweet(
            id=tid,
            text=text,
            created=_parse_time(t.get("createdAt")),
            author_id=opt_str(author.get("id")) or opt_str(author.get("userName")),
            parent_id=str(parent) if parent is not None else None,
            is_reply=bool(t.get("isReply")) or parent is not None,
            is_retweet=bool(t.get("isRetweet")) or bool(t.get("retweet")),
            likes=to_int(t.get("likeCount")) or 0,
            retweets=to_int(t.get("retweetCount")) or 0,
            followers=to_int(author.get("followers")),
            has_media=bool(media),
            has_url=any(not _is_media_url(u) for u in urls) or contains_url(text),
            lang=opt_str(t.get("lang")),
            conversation_id=opt_str(t.get("conversationId")),
        )
    )


# Generic tweet-level fields (for mapped CSV/JSONL rows that still need joining).
TWEET_FIELDS = (
    "id",
    "text",
    "created_at",
    "in_reply_to_id",
    "author_id",
    "author_followers",
    "likes",
    "retweets",
    "has_media",
    "has_url",
    "lang",
    "conversation_id",
)


def _mapped_getter(mapping: Mapping[str, str] | None) -> Callable[[Mapping[str, Any], str], Any]:
    m = dict(mapping or {})

    def get(rec: Mapping[str, Any], ours: str) -> Any:
        theirs = m.get(ours, ours)
        if "." in theirs and theirs not in rec:  # dotted path into nested JSON: "author.followers"
            cur: Any = rec
            for part in theirs.split("."):
                cur = cur.get(part) if isinstance(cur, dict) else None
            return cur
        v = rec.get(theirs)
        return None if isinstance(v, str) and v.strip() == "" else v

    return get


def _mapped_kind(rec: Mapping[str, Any], get: Callable[[Mapping[str, Any], str], Any]) -> str | None:
    if get(rec, "tweet") is not None and get(rec, "reply") is not None:
        return "pairs"
    if get(rec, "id") is not None and get(rec, "text") is not None:
        return "tweets"
    return None


def _mapped_pair(rec: Mapping[str, Any], get: Callable[[Mapping[str, Any], str], Any], where: str, row_no: int) -> Pair:
    tweet, reply = get(rec, "tweet"), get(rec, "reply")
    if tweet is None or reply is None:
        raise ValueError(f"{where}: missing 'tweet' or 'reply' value")
    pair_id = opt_str(get(rec, "pair_id")) or opt_str(get(rec, "id")) or f"row{row_no}"
    # Without a parent id, identical tweet text is the same parent (keeps the grouped split honest).
    tweet_id = opt_str(get(rec, "tweet_id")) or "h" + hashlib.sha1(normalize_text(str(tweet)).encode()).hexdigest()[:12]
    diff = to_int(get(rec, "time_diff_seconds"))
    if diff is None:
        t0, t1 = _parse_time(get(rec, "tweet_created_at")), _parse_time(get(rec, "reply_created_at"))
        diff = t1 - t0 if t0 is not None and t1 is not None else None
    reply_s = str(reply)
    has_url_v = get(rec, "has_url")
    return Pair(
        pair_id=pair_id,
        tweet_id=tweet_id,
        tweet=str(tweet),
        reply=reply_s,
        likes=to_int(get(rec, "likes")) or 0,
        retweets=to_int(get(rec, "retweets")) or 0,
        author_followers=to_int(get(rec, "author_followers")),
        time_diff_seconds=diff,
        has_media=to_bool(get(rec, "has_media")),
        has_url=to_bool(has_url_v) if has_url_v is not None else contains_url(reply_s),
        topic=opt_str(get(rec, "topic")),
        tone=opt_str(get(rec, "tone")),
        lang=opt_str(get(rec, "lang")),
        conversation_id=opt_str(get(rec, "conversation_id")),
    )


def _mapped_tweet(rec: Mapping[str, Any], get: Callable[[Mapping[str, Any], str], Any], where: str) -> _Tweet:
    tid = opt_str(get(rec, "id"))
    text = get(rec, "text")
    if tid is None or text is None:
        raise ValueError(f"{where}: missing 'id' or 'text' value")
    parent = opt_str(get(rec, "in_reply_to_id"))
    clean = _clean_text(str(text))
    has_url_v = get(rec, "has_url")
    return _Tweet(
        id=tid,
        text=clean,
        created=_parse_time(get(rec, "created_at")),
        author_id=opt_str(get(rec, "author_id")),
        parent_id=parent,
        is_reply=parent is not None,
        likes=to_int(get(rec, "likes")) or 0,
        retweets=to_int(get(rec, "retweets")) or 0,
        followers=to_int(get(rec, "author_followers")),
        has_media=to_bool(get(rec, "has_media")),
        has_url=to_bool(has_url_v) if has_url_v is not None else contains_url(clean),
        lang=opt_str(get(rec, "lang")),
        conversation_id=opt_str(get(rec, "conversation_id")),
    )


# --------------------------------------------------------------------------- public API

_FORMAT_HINT = (
    "expected X API v2 responses (data/includes), X API v1.1 statuses (id_str, full_text, user), "
    "an Apify tweet-scraper export (id, text, likeCount, author), our pairs JSONL (pair_id, tweet, reply), "
    "or pass mapping={our_field: their_field}"
)


def _records(path: Path) -> tuple[str, Iterator[tuple[Any, str]]]:
    container = _sniff_container(path)
    if container == "csv":
        return "csv", _iter_csv_records(path, str(path))
    return _iter_json_records(path, str(path))


def detect_format(path: str | os.PathLike[str], mapping: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(format, container) from the first record, without reading the whole file."""
    p = Path(path)
    container, recs = _records(p)
    try:
        first = next(iter(recs), None)
    finally:
        close = getattr(recs, "close", None)
        if close:
            close()
    if first is None:
        raise ValueError(f"{p}: no records found; {_FORMAT_HINT}")
    return _format_of(first[0], first[1], container, mapping, p), container


def _format_of(rec: Any, where: str, container: str, mapping: Mapping[str, str] | None, path: Path) -> str:
    if container == "csv":
        return "csv"
    if mapping:
        return "mapped"
    fmt = _detect_record(rec)
    if fmt is None:
        keys = sorted(rec)[:15] if isinstance(rec, dict) else type(rec).__name__
        raise ValueError(f"{path}: {where}: unknown record format (keys: {keys}); {_FORMAT_HINT}")
    return fmt


def import_file(
    path: str | os.PathLike[str],
    mapping: Mapping[str, str] | None = None,
    fmt: str = "auto",
) -> ImportResult:
    """Read an export, auto-detect its format, join replies to parents, and report what happened.

    Raises ValueError naming the file, the line/position and what was expected on malformed input.
    Nothing is written.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    container, recs = _records(p)
    report = ImportReport(path=str(p), format="", container=container)
    joiner = _Joiner(report)
    pairs: list[Pair] = []
    get = _mapped_getter(mapping)
    kind: str | None = None
    seen_pair_ids: set[str] = set()
    handler: Callable[[Any, str], None] | None = None

    def add_pair(pr: Pair) -> None:
        if pr.pair_id in seen_pair_ids:
            joiner.skip("duplicate_ids")
            return
        seen_pair_ids.add(pr.pair_id)
        pairs.append(pr)

    try:
        for rec, loc in recs:
            where = f"{p}: {loc}"
            report.n_records += 1
            if handler is None:
                report.format = fmt if fmt != "auto" else _format_of(rec, loc, container, mapping, p)
                f = report.format
                if f == "x_api_v2":
                    handler = lambda r, w: _handle_v2(_as_dict(r, w), w, joiner)  # noqa: E731
                elif f == "x_api_v1.1":
                    handler = lambda r, w: _handle_v1(_as_dict(r, w), w, joiner)  # noqa: E731
                elif f == "apify":
                    handler = lambda r, w: _handle_apify(_as_dict(r, w), w, joiner)  # noqa: E731
                elif f in ("sample", "mapped", "csv"):
                    kind = _mapped_kind(_as_dict(rec, where), get)
                    if kind is None:
                        cols = sorted(rec)[:20] if isinstance(rec, dict) else []
                        raise ValueError(
                            f"{where}: cannot map record to pairs (need 'tweet' + 'reply') or tweets (need 'id' + "
                            "'text'); "
                            + (f"column mapping {dict(mapping)}, " if mapping else "")
                            + f"columns present: {', '.join(map(str, cols))}"
                        )

                    def handler(r: Any, w: str) -> None:
                        d = _as_dict(r, w)
                        if kind == "pairs":
                            add_pair(_wrap(lambda: _mapped_pair(d, get, w, report.n_records), w))
                        else:
                            joiner.add(_wrap(lambda: _mapped_tweet(d, get, w), w))
                else:
                    raise ValueError(f"{p}: unknown format {f!r}; {_FORMAT_HINT}")
            _wrap(lambda: handler(rec, where), where)  # type: ignore[misc]
    finally:
        close = getattr(recs, "close", None)
        if close:
            close()
    if handler is None:
        raise ValueError(f"{p}: no records found; {_FORMAT_HINT}")
    if kind == "pairs":
        report.n_replies = len(pairs)
    else:
        pairs = joiner.finish()
    report.n_pairs = len(pairs)
    return ImportResult(pairs=pairs, report=report)


def _as_dict(rec: Any, where: str) -> dict[str, Any]:
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    return rec


def _wrap(fn: Callable[[], Any], where: str) -> Any:
    """Prefix value errors (bad int, bad timestamp) with the file and position."""
    try:
        return fn()
    except ValueError as exc:
        msg = str(exc)
        raise ValueError(msg if msg.startswith(where.split(": ")[0]) else f"{where}: {msg}") from None


def read_pairs(path: str | os.PathLike[str], mapping: Mapping[str, str] | None = None) -> list[Pair]:
    """Convenience: import_file(...).pairs."""
    return import_file(path, mapping).pairs


def write_pairs_jsonl(pairs: Iterable[Pair], path: str | os.PathLike[str]) -> int:
    """Write pairs as JSONL atomically (temp file + rename), so a crash never leaves half a file."""
    n = 0

    def _write(fh) -> None:
        nonlocal n
        for pr in pairs:
            fh.write(json.dumps(pr.to_dict(), ensure_ascii=False) + "\n")
            n += 1

    atomic_write(path, _write)
    return n
