"""Import: format detection, joining, missing parents, malformed input, streaming memory bound."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path

import pytest

from training.data.importers import detect_format, import_file, write_pairs_jsonl
from training.data.pairs import Pair

ROOT = Path(__file__).resolve().parents[4]
FIX = ROOT / "tests" / "fixtures"
CSV_MAPPING = {
    "id": "Tweet ID",
    "text": "Content",
    "created_at": "Posted At",
    "in_reply_to_id": "Reply To",
    "author_id": "Handle",
    "author_followers": "Followers",
    "likes": "Likes",
    "retweets": "Reposts",
    "has_media": "Has Media",
    "lang": "Language",
}


def by_id(pairs: list[Pair]) -> dict[str, Pair]:
    return {p.pair_id: p for p in pairs}


def test_x_api_v2_joins_with_includes_users_and_referenced_tweets() -> None:
    res = import_file(FIX / "x_api_v2_search.json")
    rep = res.report
    assert (rep.format, rep.container) == ("x_api_v2", "json")
    assert rep.n_pairs == 3
    assert rep.missing_parent == ["1700000000000000301"] and rep.n_missing_parent == 1
    assert rep.skipped == {"self_replies": 1}
    pairs = by_id(res.pairs)
    a = pairs["1700000000000000101"]  # parent only in includes.tweets
    assert a.tweet_id == "1700000000000000001"
    assert a.tweet == "Pasta water: salt it or not? Settle this for me."
    assert (
        a.reply == "Salt it like the sea & save a mug of the water before you drain it."
    )  # mention stripped, &amp; unescaped
    assert (a.likes, a.retweets, a.author_followers, a.time_diff_seconds) == (42, 3, 1200, 600)
    assert (a.has_media, a.has_url, a.lang, a.conversation_id) == (False, False, "en", "1700000000000000001")
    m = pairs["1700000000000000102"]  # photo reply: media link removed from the text, not counted as a URL
    assert (m.has_media, m.has_url, m.time_diff_seconds, m.author_followers) == (True, False, 270, 650)
    assert "t.co" not in m.reply
    u = pairs["1700000000000000201"]  # parent appears later in `data`
    assert u.tweet.startswith("What's the smallest thing")
    assert (u.has_url, u.has_media, u.time_diff_seconds, u.author_followers) == (True, False, 3600, 23000)


def test_x_api_v1_statuses_jsonl() -> None:
    res = import_file(FIX / "x_api_v1_statuses.jsonl")
    rep = res.report
    assert (rep.format, rep.container, rep.n_records) == ("x_api_v1.1", "jsonl", 7)
    assert rep.n_pairs == 4 and rep.missing_parent == ["1050144000000000000"]
    assert rep.skipped == {"retweets": 1}
    pairs = by_id(res.pairs)
    p = pairs["1050121137932419072"]
    assert p.reply == "Paper never sends me a notification, which is exactly why it works."
    assert (p.likes, p.retweets, p.author_followers, p.time_diff_seconds) == (12, 2, 800, 600)  # Twitter date format
    media = pairs["1050119024000000000"]
    assert (media.has_media, media.has_url, media.reply, media.time_diff_seconds) == (
        True,
        False,
        "Mine, for reference",
        96,
    )
    assert pairs["1050299000000000000"].has_url is True  # entities.urls, `text` instead of `full_text`
    ext = pairs["1050164000000000000"]  # inside a {"statuses": [...]} page, extended_tweet.full_text
    assert ext.reply.endswith("somewhere else for forty minutes.") and ext.time_diff_seconds == 3 * 3600


def test_apify_tweet_scraper_array() -> None:
    res = import_file(FIX / "apify_tweets.json")
    rep = res.report
    assert (rep.format, rep.container, rep.n_records, rep.n_pairs) == ("apify", "json_array", 5, 3)
    assert rep.missing_parent == ["1730000000000000013"]
    pairs = by_id(res.pairs)
    p = pairs["1730000000000000011"]
    assert p.reply.startswith("A snake plant.") and p.tweet.startswith("What's one plant")
    assert (p.likes, p.retweets, p.author_followers, p.time_diff_seconds) == (57, 4, 3400, 1800)
    assert pairs["1730000000000000012"].has_media and not pairs["1730000000000000012"].has_url
    assert pairs["1730000000000000014"].has_url and not pairs["1730000000000000014"].has_media


def test_csv_tweets_with_mapping_are_joined() -> None:
    assert detect_format(FIX / "tweets_export.csv", CSV_MAPPING) == ("csv", "csv")
    res = import_file(FIX / "tweets_export.csv", CSV_MAPPING)
    assert res.report.n_pairs == 3 and res.report.missing_parent == ["9004"]
    pairs = by_id(res.pairs)
    p = pairs["9002"]
    assert p.tweet == "Unpopular opinion: cold brew is just patience, bottled."
    assert (p.likes, p.retweets, p.author_followers, p.time_diff_seconds, p.has_media) == (48, 6, 2600, 2700, False)
    assert (
        pairs["9003"].reply == "Counterpoint: a good cold brew, made right,\nis worth every single hour."
    )  # quoted newline
    assert pairs["9005"].has_media is True


def test_csv_of_joined_pairs_with_mapping(tmp_path: Path) -> None:
    f = tmp_path / "pairs.csv"
    f.write_text(
        "id,original,answer,hearts,rts,fans,delay,img\n"
        'a1,Tweet one,"A reply, with a comma, long enough",10,1,900,400,false\n'
        "a2,Tweet one,Another reply to the same tweet text,3,0,700,100,true\n",
        encoding="utf-8",
    )
    mapping = {
        "pair_id": "id",
        "tweet": "original",
        "reply": "answer",
        "likes": "hearts",
        "retweets": "rts",
        "author_followers": "fans",
        "time_diff_seconds": "delay",
        "has_media": "img",
    }
    res = import_file(f, mapping)
    a1, a2 = res.pairs
    assert (a1.pair_id, a1.reply, a1.likes, a1.author_followers, a1.time_diff_seconds) == (
        "a1",
        "A reply, with a comma, long enough",
        10,
        900,
        400,
    )
    assert a2.has_media is True and a1.has_media is False
    assert a1.tweet_id == a2.tweet_id  # no parent id column: same tweet text → same group


def test_sample_jsonl_round_trip(tmp_path: Path) -> None:
    res = import_file(ROOT / "assets" / "sample_pairs.jsonl")
    assert (res.report.format, res.report.n_pairs, res.report.n_missing_parent) == ("sample", 260, 0)
    first = json.loads((ROOT / "assets" / "sample_pairs.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert {k: v for k, v in res.pairs[0].to_dict().items() if k in first} == first
    out = tmp_path / "copy.jsonl.gz"
    # write plain then gzip it: the importer reads .gz transparently
    plain = tmp_path / "copy.jsonl"
    assert write_pairs_jsonl(res.pairs, plain) == 260
    out.write_bytes(gzip.compress(plain.read_bytes()))
    assert [p.to_dict() for p in import_file(out).pairs] == [p.to_dict() for p in res.pairs]


# ------------------------------------------------------------------ malformed input


@pytest.mark.parametrize(
    "name, content, expect",
    [
        (
            "bad.jsonl",
            '{"pair_id": "p1", "tweet_id": "t", "tweet": "x", "reply": "y"}\n{"pair_id": "p2",\n',
            r"bad\.jsonl: line 2.*invalid JSON.*JSONL",
        ),
        (
            "bad.json",
            '[\n {"id": "1", "text": "a", "likeCount": 1},\n {"id": "2", "text": "b" "likeCount": 2}\n]',
            r"bad\.json: line 3.*invalid JSON",
        ),
        (
            "trunc.json",
            '[\n {"id": "1", "text": "a", "likeCount": 1},\n',
            r"trunc\.json: line 3.*(end of file|invalid JSON)",
        ),
        (
            "unknown.jsonl",
            '{"foo": 1, "bar": 2}\n',
            r"unknown\.jsonl: line 1: unknown record format.*expected X API v2",
        ),
        ("notjson.txt", "hello world\nthis is not data\n", r"notjson\.txt: line 1: unknown format"),
        ("empty.json", "   \n", r"empty\.json: file is empty"),
        (
            "v2_no_text.json",
            '{"data": [{"id": "5", "author_id": "1"}], "includes": {"users": []}}',
            r"v2_no_text\.json: line 1.*data\[0\].*'text'",
        ),
        (
            "sample_missing.jsonl",
            '{"pair_id": "p1", "tweet_id": "t", "tweet": "x", "reply": "y"}\n'
            '{"pair_id": "p2", "tweet_id": "t", "tweet": "x"}\n',
            r"sample_missing\.jsonl: line 2: missing 'tweet' or 'reply'",
        ),
        (
            "bad_time.jsonl",
            '{"id_str": "1", "full_text": "a", "created_at": "yesterday-ish", "user": {"followers_count": 1}}\n',
            r"bad_time\.jsonl: line 1: unrecognized timestamp 'yesterday-ish'",
        ),
    ],
)
def test_malformed_input_raises_clear_error(tmp_path: Path, name: str, content: str, expect: str) -> None:
    f = tmp_path / name
    f.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=expect):
        import_file(f)


def test_not_utf8_and_csv_mapping_errors(tmp_path: Path) -> None:
    f = tmp_path / "latin1.jsonl"
    f.write_bytes(b'{"text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"latin1\.jsonl: not UTF-8"):
        import_file(f)
    c = tmp_path / "cols.csv"
    c.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"cols\.csv: line 2: cannot map record.*columns present: a, b$"):
        import_file(c)


def test_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    good = Pair("p1", "t1", "tweet", "reply")

    def gen():
        yield good
        raise RuntimeError("crash mid-write")

    dst = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        write_pairs_jsonl(gen(), dst)
    assert not dst.exists() and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ streaming memory bound


def _status(i: int) -> dict:
    """A v1.1 status of realistic shape (~1.3 KB, real ones are larger); odd ids reply to the previous one."""
    parent = i - 1 if i % 2 else None
    return {
        "created_at": "Wed Oct 10 20:19:24 +0000 2018",
        "id": 10**18 + i,
        "id_str": str(10**18 + i),
        "full_text": (f"@user{parent} " if parent is not None else "")
        + f"tweet {i} "
        + "lorem ipsum dolor sit amet " * 4,
        "truncated": False,
        "display_text_range": [0, 140],
        "source": '<a href="http://twitter.com/download/iphone" rel="nofollow">Twitter for iPhone</a>',
        "entities": {"hashtags": [], "symbols": [], "user_mentions": [], "urls": []},
        "in_reply_to_status_id_str": str(10**18 + parent) if parent is not None else None,
        "user": {
            "id_str": str(5000 + i % 997),
            "name": "Some Name",
            "screen_name": f"user{i % 997}",
            "location": "Somewhere",
            "description": "Writes about coffee, code and cats. Opinions are my own. " * 2,
            "followers_count": 1000 + i,
            "friends_count": 300,
            "listed_count": 2,
            "created_at": "Wed Oct 10 20:19:24 +0000 2012",
            "favourites_count": 4000,
            "statuses_count": 9000,
            "profile_image_url_https": "https://pbs.twimg.com/profile_images/1234567890/abcdefg_normal.jpg",
            "default_profile": False,
            "verified": False,
        },
        "retweet_count": 1,
        "favorite_count": 10,
        "lang": "en",
        "possibly_sensitive": False,
        "place": None,
    }


@pytest.mark.parametrize("container", ["jsonl", "json_array"])
def test_streaming_memory_stays_below_file_size(tmp_path: Path, container: str) -> None:
    path = tmp_path / ("big.jsonl" if container == "jsonl" else "big.json")
    target = 20 * 2**20
    n = size = 0
    with open(path, "w", encoding="utf-8") as fh:
        if container == "json_array":
            fh.write("[\n")
        while size < target:
            s = json.dumps(_status(n))
            s = s + "\n" if container == "jsonl" else ("" if n == 0 else ",\n") + s
            fh.write(s)
            size += len(s)
            n += 1
        if container == "json_array":
            fh.write("\n]\n")
    file_size = path.stat().st_size
    tracemalloc.start()
    try:
        res = import_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.report.container == container and res.report.format == "x_api_v1.1"
    assert res.report.n_records == n and res.report.n_pairs == n // 2
    assert res.pairs[-1].time_diff_seconds == 0 and res.pairs[0].reply.startswith("tweet 1 ")
    # Whole-file json.load would need several × the file size; the streaming reader stays under 1×.
    assert peak < file_size, f"peak {peak / 2**20:.1f} MB for a {file_size / 2**20:.1f} MB file"
