"""Batch replies + cache, the whole evaluation pipeline, report escaping, the A/B ledger, the CLI and the tab's gate.

Model: the tiny random Qwen3 (tests/support/tiny_qwen3.py) with a tiny LoRA adapter. Judge: the real anthropic client
against tests/support/messages_server.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from arena.store import VoteStore
from evaluation.batch import EvalItem, ReplyCache, generate_replies, load_items
from evaluation.judge import make_judge
from evaluation.ledger import Ledger, LedgerRow
from evaluation.run import EvalConfig, run_evaluation
from generation import Engine, GenerationResult, ModelConfig, SamplingConfig, load_base
from tests.support.messages_server import MessagesServer
from tests.support.tiny_qwen3 import save_tiny_qwen3

ROOT = Path(__file__).resolve().parents[2]
GREEDY = SamplingConfig(temperature=0.0, do_sample=False, max_new_tokens=12)


def _make_adapter(base, out_dir: Path, base_name: str) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    pm = get_peft_model(
        base,
        LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
        ),
    )
    pm.save_pretrained(str(out_dir))
    cfg = json.loads((out_dir / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = base_name
    (out_dir / "adapter_config.json").write_text(json.dumps(cfg))
    pm.unload()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    tdir = save_tiny_qwen3(root / "tiny")
    loaded = load_base(ModelConfig(base_model=str(tdir), device="cpu", cpu_dtype="float32"))
    _make_adapter(build_scratch(tdir), root / "adapters" / "tiny", str(tdir))
    return SimpleNamespace(
        root=root, dir=tdir, adapters=root / "adapters", loaded=loaded, engine=Engine(loaded, root / "adapters")
    )


def build_scratch(tdir):
    return load_base(ModelConfig(base_model=str(tdir), device="cpu", cpu_dtype="float32")).model


class CountingEngine:
    """Wraps an Engine and counts model calls (generate_batch) and generated replies."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = 0
        self.generated = 0

    def generate_batch(self, tweets, variant, *args, **kw):
        self.calls += 1
        self.generated += len(tweets)
        return self.inner.generate_batch(tweets, variant, *args, **kw)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class ScriptedEngine(CountingEngine):
    """The real engine's prompts and variants, but canned replies (to test escaping and the statistics end to end)."""

    def __init__(self, inner, replies: dict[str, list[str]]):
        super().__init__(inner)
        self.replies = replies
        self.tweets: list[str] = []

    def generate_batch(self, tweets, variant, sampling=None, thinking=False, batch_size=8, progress=None):
        self.calls += 1
        out = []
        for t in tweets:
            i = self.tweets.index(t)
            out.append(GenerationResult(variant, self.replies[variant][i], raw=self.replies[variant][i], new_tokens=5))
        if progress:
            progress(len(tweets), len(tweets))
        return out


ITEMS = [
    EvalItem(f"t{i}", t, [r])
    for i, (t, r) in enumerate(
        [
            ("Coffee before code or code before coffee?", "Coffee first, always."),
            ("Tabs or spaces in 2026?", "Whatever the formatter says."),
            ("Is remote work better for deep focus?", "For focus, yes: no drop-ins."),
        ]
    )
]


def test_batch_replies_are_cached_on_disk(tiny, tmp_path):
    eng = CountingEngine(tiny.engine)
    variants = ["base", "lora:tiny"]
    first = generate_replies(eng, ITEMS, variants, sampling=GREEDY, cache=tmp_path / "cache")
    assert eng.calls == 2 and eng.generated == 6 and first.n_generated == 6 and first.n_cached == 0
    assert all(len(first.replies[v]) == 3 for v in variants)
    seen: list[tuple] = []
    again = generate_replies(
        eng,
        ITEMS,
        variants,
        sampling=GREEDY,
        cache=ReplyCache(tmp_path / "cache"),
        progress=lambda d, n, m: seen.append((d, n)),
    )
    assert eng.calls == 2 and again.n_cached == 6 and again.model_calls == 0  # zero model calls on the re-run
    assert [r.reply for r in again.replies["lora:tiny"]] == [r.reply for r in first.replies["lora:tiny"]]
    assert all(r.cached for r in again.replies["base"]) and seen[-1] == (6, 6)
    # another setting or a new tweet misses the cache; only the new work is done
    generate_replies(
        eng,
        ITEMS,
        ["base"],
        sampling=SamplingConfig(temperature=0.0, do_sample=False, max_new_tokens=8),
        cache=tmp_path / "cache",
    )
    assert eng.calls == 3 and eng.generated == 9
    more = ITEMS + [EvalItem("t9", "A brand new tweet about tests?", [])]
    generate_replies(eng, more, ["base"], sampling=GREEDY, cache=tmp_path / "cache")
    assert eng.calls == 4 and eng.generated == 10


def test_load_items_formats(tmp_path):
    (tmp_path / "a.csv").write_text(
        "tweet,reference_reply\nhello world,hi there\nhello world,hey\n,empty\n" + "x" * 300 + ",long\n"
    )
    items, warns = load_items(tmp_path / "a.csv")
    assert len(items) == 1 and items[0].references == ["hi there", "hey"] and any("skipped 2" in w for w in warns)
    rows = [{"tweet": "t1", "reply": "r1", "split": "train"}, {"tweet": "t2", "reply": "r2", "split": "eval"}]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    items, _ = load_items(tmp_path / "pairs.jsonl")
    assert [(i.tweet, i.references) for i in items] == [("t2", ["r2"])]
    assert len(load_items(ROOT / "assets" / "heldout_tweets.jsonl", limit=5)[0]) == 5
    (tmp_path / "bad.jsonl").write_text('{"text": "no tweet column"}\n')
    with pytest.raises(ValueError, match="`tweet` column"):
        load_items(tmp_path / "bad.jsonl")


def test_pipeline_report_escapes_user_text_and_logs_to_the_ledger(tiny, tmp_path):
    evil = "<script>alert(1)</script> nice"
    replies = {
        "base": [evil, "Tabs, obviously.", "Remote work for deep focus, yes."],
        "lora:tiny": [
            "Coffee before code, always.",
            "Spaces. Long rambling reply about editors and history and more.",
            "Is remote work better? Deep focus needs quiet.",
        ],
    }
    eng = ScriptedEngine(tiny.engine, replies)
    eng.tweets = [it.tweet for it in ITEMS]
    (tiny.adapters / "tiny" / "metrics.json").write_text(json.dumps({"eval_loss": 0.8}))
    data_dir = tmp_path / "data"
    votes = [{"tweet": ITEMS[0].tweet, "reply_a": replies["lora:tiny"][0], "reply_b": evil, "vote": "a"}]
    try:
        with MessagesServer() as srv:
            judge = make_judge("anthropic", api_key="test", base_url=srv.url, cache_dir=data_dir / "eval_cache")
            progress: list[float] = []
            res = run_evaluation(
                eng,
                ITEMS,
                EvalConfig(name="esc <b>", adapters=["tiny"], workers=2),
                judge=judge,
                data_dir=data_dir,
                votes=votes,
                progress=lambda f, m: progress.append(f),
            )
            n_requests = len(srv.requests)
        assert n_requests == 2 * 3 + 3 * 2  # 2 variants x 3 scores + 1 pair x 3 tweets x 2 orders
        assert progress[-1] == 1.0 and progress == sorted(progress)
    finally:
        (tiny.adapters / "tiny" / "metrics.json").unlink()
    rdir = Path(res["report_dir"])
    assert rdir.parent == data_dir / "reports" and rdir.name.endswith("-esc-b")
    assert not [p for p in rdir.parent.iterdir() if p.name.startswith(".tmp-")]
    html_text = (rdir / "report.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; nice" in html_text and "<script>" not in html_text
    assert "esc &lt;b&gt;" in html_text and html_text.count("data:image/png;base64,") == 3
    md = (rdir / "report.md").read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md
    rep = json.loads((rdir / "report.json").read_text())
    pair = rep["pairs"][0]
    assert (pair["a"], pair["b"], pair["n"]) == ("lora:tiny", "base", 3) and pair["win_rate"] is not None
    assert pair["ci_low"] <= pair["win_rate"] <= pair["ci_high"]
    assert rep["verdicts"]["phase0"]["verdict"] in ("consider RAG first", "fine-tune", "rethink the approach")
    assert rep["verdicts"]["phase4"][0]["verdict"] == "not enough votes"  # 3 tweets < 10 decisive judgments
    lora_rank = next(r for r in rep["ranking"] if r["contender"] == "lora:tiny")
    assert lora_rank["eval_loss"] == 0.8 and lora_rank["composite"] is not None
    assert rep["judge_vs_human"]["n"] == 1
    assert rep["judge"]["usage"]["calls"] == 12 and rep["judge"]["usage"]["cost_usd"] > 0
    assert rep["items"][0]["replies"]["base"] == evil  # the data itself is kept verbatim in JSON
    rows = Ledger(data_dir).list()
    assert len(rows) == 1 and rows[0].adapter == "lora:tiny" and rows[0].report_path == str(rdir)
    assert rows[0].config_hash == rep["settings"]["config_hash"] and rows[0].verdict == "not enough votes"


def test_ledger_round_trip(tmp_path):
    led = Ledger(tmp_path)
    ids = led.append(
        [
            LedgerRow(
                "e1",
                "first",
                "lora:a",
                "base",
                "success",
                {"win_rate": 0.7, "ci_low": 0.6, "ci_high": 0.8, "p_value": 0.01, "judge": "m"},
                "/r/1",
                "abc",
            ),
            LedgerRow("e1", "first", "lora:a", "rag", "marginal", {"win_rate": 0.55}, "/r/1", "abc"),
        ]
    )
    led.append([LedgerRow("e2", "second", "lora:b", "base", "failure", {}, "/r/2", "def")])
    led.close()
    again = Ledger(tmp_path)  # a fresh connection reads what was committed
    rows = again.list()
    assert [r.eval_id for r in rows] == ["e2", "e1", "e1"] and len(ids) == 2
    assert rows[2].metrics["win_rate"] == 0.7 and rows[2].versus == "base" and rows[2].verdict == "success"
    assert again.latest_report("a") == "/r/1" and again.latest_report("zzz") is None
    table = again.table()
    assert table[2][4] == "70.0%" and table[2][5] == "0.60 – 0.80" and table[2][7] == "success"
    assert (tmp_path / "ledger.sqlite3").is_file()


def test_cli_end_to_end(tiny, tmp_path):
    tweets = tmp_path / "five.jsonl"
    src = (ROOT / "assets" / "heldout_tweets.jsonl").read_text().splitlines()[:5]
    tweets.write_text("\n".join(src) + "\n")
    out = tmp_path / "reports"
    env = {
        **os.environ,
        "ANTHROPIC_API_KEY": "test",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
        "REPLY_ARENA_MAX_NEW_TOKENS": "16",
    }
    with MessagesServer() as srv:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "evaluation.run",
                "--adapters",
                "tiny",
                "--tweets",
                str(tweets),
                "--judge",
                "anthropic",
                "--out",
                str(out),
                "--base-model",
                str(tiny.dir),
                "--device",
                "cpu",
                "--limit",
                "5",
                "--data-dir",
                str(tmp_path / "data"),
                "--adapters-dir",
                str(tiny.adapters),
                "--anthropic-base-url",
                srv.url,
                "--no-rag",
                "--name",
                "cli",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        n_requests = len(srv.requests)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("report: "))
    rdir = Path(line[len("report: ") :])
    assert rdir.parent == out and (rdir / "report.html").is_file()
    rep = json.loads((rdir / "report.json").read_text())
    assert rep["data"]["n_items"] == 5 and rep["settings"]["variants"] == ["base", "lora:tiny"]
    assert rep["pairs"][0]["n"] + rep["pairs"][0]["unparsed"] == 5 and rep["pairs"][0]["win_rate"] is not None
    assert rep["verdicts"]["phase0"]["verdict"] and rep["verdicts"]["phase4"][0]["adapter"] == "lora:tiny"
    assert n_requests == 2 * 5 + 5 * 2 and rep["judge"]["model"] == "claude-sonnet-4-5"
    assert "Phase 4 lora:tiny vs base" in proc.stdout and "win rate" in proc.stdout
    assert Ledger(tmp_path / "data").list()[0].report_path == str(rdir)


def test_cli_without_key_says_so(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    proc = subprocess.run(
        [sys.executable, "-m", "evaluation.run", "--judge", "anthropic", "--limit", "1", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        proc.returncode == 2
        and "Set ANTHROPIC_API_KEY to use the Claude judge, or pick the local judge." in proc.stderr
    )


# ---------------------------------------------------------------- the tab
def _ctx(tiny, tmp_path):
    from context import Settings

    from security import AdminGate

    heldout = ROOT / "assets" / "heldout_tweets.jsonl"
    tweets = [json.loads(line)["tweet"] for line in heldout.read_text().splitlines()[:2]]
    engine = ScriptedEngine(
        tiny.engine,
        {
            "base": ["Short and on topic.", "Another one."],
            "lora:tiny": ["A longer reply that wanders around the topic.", "Fine."],
        },
    )
    engine.tweets = tweets  # canned replies: this test is about the tab's wiring and gate, not generation
    settings = Settings(data_dir=tmp_path / "data", adapters_dir=tiny.adapters, heldout=heldout)
    return SimpleNamespace(
        engine=engine,
        settings=settings,
        gate=AdminGate(password="pw", on_space=False),
        votes=VoteStore(settings.data_dir),
        model_banner=lambda: "tiny",
    )


def test_tab_gates_every_handler_and_runs_for_admins(tiny, tmp_path, monkeypatch):
    import gradio as gr

    from evaluation.ui import build_evaluate_tab, run_for_tab

    ctx = _ctx(tiny, tmp_path)
    with gr.Blocks() as demo:
        build_evaluate_tab(ctx)
    fns = {f.name: f.fn for f in demo.fns.values()}
    guest = SimpleNamespace(session_hash="guest")
    assert (
        "admin"
        in fns["on_run"]("heldout", None, None, [], False, False, "local", "", 2, 0.4, 0.3, 0.3, 10, "x", guest)[0]
    )
    assert "admin" in fns["on_ledger"](guest)[0] and "admin" in fns["on_open"](guest)[0]
    assert "admin" in fns["on_publish"]("tiny", "me/x", True, False, "", guest)[0]
    assert "admin" in fns["on_refresh_adapters"](guest)[0]

    token = ctx.gate.login("pw", "127.0.0.1")  # the server-issued token the login route puts in the HttpOnly cookie
    admin = SimpleNamespace(session_hash="boss", headers={"cookie": f"reply_arena_admin={token}"})
    assert not ctx.gate.is_admin(SimpleNamespace(session_hash="boss", headers={}))  # the session hash alone is nothing
    msg = fns["on_run"](
        "heldout", None, None, ["lora:tiny"], False, False, "anthropic", "", 2, 0.4, 0.3, 0.3, 10, "x", admin
    )[0]
    assert "to use the Claude judge, or pick the local judge" in msg  # no key: a message, nothing else breaks
    assert fns["on_ledger"](admin) == ("", [])
    pub_msg, card = fns["on_publish"]("tiny", "me/tiny-lora", True, False, "", admin)
    assert "Dry run" in pub_msg and "# tiny" in card

    ctx.settings.anthropic_api_key = "test"  # what Settings.from_env reads from ANTHROPIC_API_KEY
    with MessagesServer() as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.url)  # the real client picks the base URL up from the environment
        res = run_for_tab(
            ctx,
            source="heldout",
            split_path=None,
            upload=None,
            adapters=["lora:tiny"],
            include_rag=False,
            thinking=False,
            judge_kind="anthropic",
            judge_model="claude-haiku-4-5",
            limit=2,
            weights=(0.4, 0.3, 0.3),
            min_votes=10,
            name="tab",
        )
        assert srv.requests and srv.requests[0]["model"] == "claude-haiku-4-5"
    assert res["data"]["n_items"] == 2 and Path(res["files"]["html"]).is_file() and ctx.engine.calls == 2
    assert fns["on_ledger"](admin)[1][0][2] == "lora:tiny"
