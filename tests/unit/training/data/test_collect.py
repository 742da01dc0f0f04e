"""The X API v2 collector and the Apify runner against local servers that speak those APIs (tests/x_api_server.py):
pagination, 429 + reset header, 503, a page with `errors` and no includes, the post cap, crash + resume, bad tokens,
the min_faves check; the output round-trips through the importer."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tests.support.x_api_server import ApifyServer, XApiServer, apify_items, expected_pairs, make_conversation
from training.data.apify import ApifyError, run_actor
from training.data.collect import EXPANSIONS, CollectConfig, CollectError, collect, main, min_faves_check
from training.data.importers import import_file

TOKEN = "test-bearer"


class FakeClock:
    """Shared by the collector and the server: sleeping moves time forward, so a 15-minute reset takes no time."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


@pytest.fixture()
def conv():
    return make_conversation(100, 250)


def _lines(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _ids(path):
    return [t["id"] for page in _lines(path) for t in page.get("data", [])]


def test_paginates_waits_for_rate_limit_retries_503_and_round_trips(tmp_path, conv):
    clock = FakeClock()
    with XApiServer({"100": conv}, faults={2: "429", 4: "503"}, errors_page=2, clock=clock) as srv:
        out = tmp_path / "c.jsonl"
        rep = collect(
            CollectConfig(out=out, conversation_ids=["100"], max_posts=1000, base_url=srv.url),
            token=TOKEN,
            clock=clock,
            sleep=clock.sleep,
        )
        reqs = srv.requests
    assert [r["params"].get("next_token") for r in reqs] == [None, "t100", "t100", "t200", "t200"]
    assert len(reqs) == 5 and srv.n_search == 5
    # the 429 said "reset in 900 s": the collector slept until then (the server refuses anything earlier)
    assert max(clock.sleeps) >= 900
    p = reqs[0]["params"]
    assert p["query"] == "conversation_id:100" and p["expansions"] == EXPANSIONS
    for f in (
        "public_metrics",
        "created_at",
        "conversation_id",
        "in_reply_to_user_id",
        "referenced_tweets",
        "lang",
        "attachments",
    ):
        assert f in p["tweet.fields"].split(",")
    assert rep.posts_read == 250 and rep.pages == 3 and rep.stopped == "done"
    pages = _lines(out)
    assert len(pages) == 3 and "errors" in pages[1] and "includes" not in pages[1]
    assert len(_ids(out)) == len(set(_ids(out))) == 250
    res = import_file(out)
    assert res.report.format == "x_api_v2"
    assert res.report.n_pairs == rep.pairs == expected_pairs(conv)
    assert rep.pairs_per_100_posts == round(100 * expected_pairs(conv) / 250, 1)
    assert any("API error" in w for w in rep.warnings)
    for f in (out, out.with_name(out.name + ".state.json")):
        assert TOKEN not in f.read_text(encoding="utf-8")


def test_post_cap_stops_before_the_cap_and_next_run_resumes(tmp_path, conv):
    clock = FakeClock()
    out = tmp_path / "c.jsonl"
    with XApiServer({"100": conv}, clock=clock) as srv:
        cfg = CollectConfig(out=out, conversation_ids=["100"], max_posts=125, base_url=srv.url)
        first = collect(cfg, token=TOKEN, clock=clock, sleep=clock.sleep)
        assert [int(r["params"]["max_results"]) for r in srv.requests] == [100, 25]
        assert first.posts_read == 125 and first.stopped == "cap" and srv.posts_served <= 125
        second = collect(cfg, token=TOKEN, clock=clock, sleep=clock.sleep)
    assert second.resumed and second.posts_read == 125 and second.posts_read_total == 250
    assert srv.requests[2]["params"]["next_token"] == "t125"
    ids = _ids(out)
    assert len(ids) == len(set(ids)) == 250
    assert import_file(out).report.n_pairs == expected_pairs(conv)


@pytest.mark.parametrize("cap", [0, 9])
def test_a_cap_below_one_page_is_refused_before_any_request(tmp_path, conv, cap):
    with XApiServer({"100": conv}) as srv, pytest.raises(CollectError, match="at least 10"):
        collect(
            CollectConfig(out=tmp_path / "c.jsonl", conversation_ids=["100"], max_posts=cap, base_url=srv.url),
            token=TOKEN,
        )
    assert srv.requests == [] and not (tmp_path / "c.jsonl").exists()


def test_crash_mid_run_resumes_without_duplicate_or_half_page(tmp_path, conv):
    clock = FakeClock()
    out = tmp_path / "c.jsonl"
    with XApiServer({"100": conv}, faults={3: "503", 4: "503"}, clock=clock) as srv:
        cfg = CollectConfig(out=out, conversation_ids=["100"], max_posts=1000, base_url=srv.url, max_retries=1)
        with pytest.raises(CollectError, match="run again to resume"):
            collect(cfg, token=TOKEN, clock=clock, sleep=clock.sleep)
        committed = out.read_bytes()
        assert len(_lines(out)) == 2
        # what a kill leaves behind: a page written but not committed, then half of another one
        with open(out, "ab") as fh:
            fh.write(committed.splitlines(keepends=True)[-1])
            fh.write(b'{"data":[{"id":"100001","text":"half a pa')
        rep = collect(cfg, token=TOKEN, clock=clock, sleep=clock.sleep)
    assert rep.resumed and any("dropped" in w for w in rep.warnings)
    assert out.read_bytes().startswith(committed)
    ids = _ids(out)  # every line parses
    assert len(ids) == len(set(ids)) == 250
    assert rep.pairs == import_file(out).report.n_pairs == expected_pairs(conv)


def test_wrong_or_missing_token_is_one_sentence_naming_the_variable(tmp_path, conv, monkeypatch):
    with XApiServer({"100": conv}, token="right") as srv, pytest.raises(CollectError) as ei:
        collect(
            CollectConfig(out=tmp_path / "c.jsonl", conversation_ids=["100"], max_posts=50, base_url=srv.url),
            token="wrong-secret",
        )
    msg = str(ei.value)
    assert "X_BEARER_TOKEN" in msg and "401" in msg and "wrong-secret" not in msg and msg.count(". ") == 0
    monkeypatch.setenv("X_BEARER_TOKEN", TOKEN)  # never read here: the app and the CLI pass the token in
    with pytest.raises(CollectError, match="^Set X_BEARER_TOKEN"):
        collect(CollectConfig(out=tmp_path / "d.jsonl", conversation_ids=["100"], max_posts=50, base_url=srv.url))


def test_min_faves_check_counts_both_runs(tmp_path, conv):
    clock = FakeClock()
    with XApiServer({"100": conv}, clock=clock) as srv:
        res = min_faves_check("100", 10, 1000, tmp_path, base_url=srv.url, token=TOKEN, clock=clock, sleep=clock.sleep)
    n_with = sum(1 for r in conv["replies"] if r["public_metrics"]["like_count"] >= 10)
    assert res.without.posts_read_total == 250 and res.with_filter.posts_read_total == n_with < 250
    assert res.reduced is True
    assert f"reduced the posts read from 250 to {n_with}" in res.summary()
    assert any(r["params"]["query"] == "conversation_id:100 min_faves:10" for r in srv.requests)


def test_min_faves_check_reports_an_operator_the_plan_refuses(tmp_path, conv):
    with XApiServer({"100": conv}, reject_min_faves=True) as srv:
        res = min_faves_check("100", 10, 100, tmp_path, base_url=srv.url, token=TOKEN)
    assert res.with_filter is None and res.reduced is None
    assert "refused" in res.summary() and "min_faves" in res.summary()
    assert res.without.posts_read_total == 100 and res.without.stopped == "cap"


def test_cli_collects_with_token_from_env(tmp_path, conv, monkeypatch, capsys):
    monkeypatch.setenv("X_BEARER_TOKEN", TOKEN)
    with XApiServer({"100": conv}) as srv:
        rc = main(
            [
                "x",
                "--conversation-id",
                "100",
                "--max-posts",
                "300",
                "--out",
                str(tmp_path / "c.jsonl"),
                "--base-url",
                srv.url,
            ]
        )
    out = capsys.readouterr()
    assert rc == 0 and "Read 250 posts in 3 pages" in out.out and f"{expected_pairs(conv)} pairs" in out.out
    assert TOKEN not in out.out + out.err
    rc = main(["x", "--conversation-id", "100", "--max-posts", "0", "--out", str(tmp_path / "z.jsonl")])
    assert rc == 2 and "at least 10" in capsys.readouterr().err


def test_apify_run_progress_dataset_and_cost(tmp_path):
    conv = make_conversation(200, 30)
    items = apify_items(conv)
    with ApifyServer(items, polls_to_finish=3, usage_usd=0.0421) as srv:
        seen: list[str] = []
        rep = run_actor(
            "apidojo/tweet-scraper",
            {"conversationIds": ["200"]},
            tmp_path / "a.jsonl",
            token="apify-test",
            base_url=srv.url,
            max_items=500,
            poll_s=0,
            progress=seen.append,
        )
        started = [r for r in srv.requests if r["method"] == "POST"]
    assert started[0]["path"].endswith("/apidojo~tweet-scraper/runs") and started[0]["params"]["maxItems"] == "500"
    assert json.loads(started[0]["body"]) == {"conversationIds": ["200"]}
    assert rep.status == "SUCCEEDED" and rep.items == len(items) and rep.cost_usd == pytest.approx(0.0421)
    assert any(s.startswith("RUNNING") for s in seen) and any(s.startswith("SUCCEEDED") for s in seen)
    res = import_file(tmp_path / "a.jsonl")
    assert res.report.format == "apify" and res.report.n_pairs == rep.pairs == expected_pairs(conv)
    assert "$0.0421" in rep.summary()


def test_apify_bad_token_and_failed_run(tmp_path, monkeypatch):
    items = apify_items(make_conversation(200, 5))
    with ApifyServer(items, token="right") as srv:
        with pytest.raises(ApifyError, match="APIFY_TOKEN") as ei:
            run_actor("a/b", {}, tmp_path / "a.jsonl", token="wrong-secret", base_url=srv.url, poll_s=0)
        assert "wrong-secret" not in str(ei.value)
    monkeypatch.setenv("APIFY_TOKEN", "apify-test")  # never read here: the app and the CLI pass the token in
    with pytest.raises(ApifyError, match="^Set APIFY_TOKEN"):
        run_actor("a/b", {}, tmp_path / "a.jsonl")
    with ApifyServer(items, final_status="FAILED") as srv, pytest.raises(ApifyError, match="ended FAILED"):
        run_actor("a/b", {}, tmp_path / "a.jsonl", token="apify-test", base_url=srv.url, poll_s=0)
    assert not (tmp_path / "a.jsonl").exists()


def test_the_data_tab_passes_the_settings_urls_and_tokens_to_every_path(tmp_path, conv):
    """X_API_BASE_URL / X_BEARER_TOKEN and APIFY_API_URL / APIFY_TOKEN, read once by Settings, reach the collector,
    the min_faves check and the Apify runner (the library modules read no environment)."""
    from context import Settings

    import gradio as gr

    from training.data.collect_ui import build_collect_panel

    def quiet(*a, **k):
        return None

    with XApiServer({"100": conv}) as x_srv, ApifyServer([], token="right") as a_srv:
        env = {"DATA_DIR": str(tmp_path), "X_API_BASE_URL": x_srv.url, "X_BEARER_TOKEN": TOKEN}
        settings = Settings.from_env({**env, "APIFY_API_URL": a_srv.url, "APIFY_TOKEN": "apify-wrong"})
        with gr.Blocks() as demo:
            build_collect_panel(SimpleNamespace(settings=settings), lambda request: None)
        fns = {f.name: f.fn for f in demo.fns.values()}
        msg, _ = fns["on_mf"]("100", 10, 300, False, None, progress=quiet)
        assert msg.startswith("✅") and len(x_srv.requests) == 3 + 2  # 250 posts in 3 pages, 124 with min_faves:10 in 2
        msg, path = fns["on_x"]("100", "", 0, 100, False, "x", None, progress=quiet)
        assert msg.startswith("✅") and path.endswith("x.jsonl") and len(x_srv.requests) == 5 + 1
        assert {r["auth"] for r in x_srv.requests} == {f"Bearer {TOKEN}"}
        msg, _ = fns["on_apify"]("a/b", 10, "{}", "a", None, progress=quiet)
        assert "Apify rejected APIFY\\_TOKEN" in msg and a_srv.requests and "apify-wrong" not in msg  # inert()
