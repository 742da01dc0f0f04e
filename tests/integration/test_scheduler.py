"""The generation scheduler on real models (tiny random Qwen3, embedded SmolLM2) and real PEFT adapters:
continuous batching gives the same greedy tokens as one-at-a-time `generate`, mixed-adapter rows equal per-adapter
outputs, callers that leave free their rows (issue 12.1), the queue is bounded, and sampling never uses the global RNG
(issue 12.2)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from generation import Engine, ModelConfig, SamplingConfig, load_base
from generation.scheduler import Request, Scheduler, SchedulerBusy, SchedulerConfig
from tests.support.tiny_qwen3 import save_tiny_qwen3

ROOT = Path(__file__).resolve().parent.parent
GREEDY = SamplingConfig(temperature=0.0, do_sample=False, max_new_tokens=24)
TWEETS = [
    "Coffee before code?",
    "Just shipped my first app to production on a Friday. What could go wrong?",
    "Tabs or spaces, final answer?",
    "hot take: meetings should be emails",
    "What is the best way to learn Rust in 2026?",
    "ok",
    "Remote work is here to stay, change my mind.",
    "Why does every startup need a dashboard?",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    # init_std 0.3: peaked logits, so greedy ties (which any float reordering may break either way) do not occur
    return save_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3-sched"), init_std=0.3)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    return load_base(ModelConfig(base_model=str(tiny_dir), device="cpu", cpu_dtype="float32"))


def _make_adapter(base, out_dir, base_name: str, seed: int):
    import json

    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    cfg = LoraConfig(
        r=4,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj", "down_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    pm = get_peft_model(base, cfg)
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if "lora_B" in n:
                p.mul_(20)  # a strong adapter: its greedy replies must differ from the base's
    pm.save_pretrained(str(out_dir))
    f = out_dir / "adapter_config.json"
    f.write_text(json.dumps({**json.loads(f.read_text()), "base_model_name_or_path": base_name}))
    pm.unload()


def _reference(model, prompt_ids: list[int], eos: list[int], n: int, pad: int) -> list[int]:
    """Plain transformers greedy decoding of one prompt alone: the ground truth."""
    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=n,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=eos,
            pad_token_id=pad,
        )
    gen = out[0, len(prompt_ids) :].tolist()
    for i, t in enumerate(gen):
        if t in eos:
            return gen[: i + 1]
    return gen


def _staggered(engine: Engine, variants: list[str], max_new: int) -> list[Request]:
    """Submit in three waves so rows join a running batch at different steps (and with different prompt lengths)."""
    s = SamplingConfig(temperature=0.0, do_sample=False, max_new_tokens=max_new)
    reqs = [engine._request(t, v, s, False)[0] for t, v in zip(TWEETS, variants)]
    tickets = []
    for wave in (reqs[:2], reqs[2:5], reqs[5:]):
        for r in wave:
            tickets.append(engine.scheduler.submit(r))
        deadline = time.time() + 30
        while (
            tickets
            and len(tickets[0].request.generated) < 3
            and not tickets[0].request.finished.is_set()
            and time.time() < deadline
        ):
            time.sleep(0.005)
    for t in tickets:
        for _ in t.events():
            pass
    return reqs


@pytest.mark.parametrize(
    "which,kv",
    [
        ("tiny", "dynamic"),
        ("tiny", "static"),
        pytest.param("embedded", "dynamic", marks=pytest.mark.slow),
        pytest.param("embedded", "static", marks=pytest.mark.slow),
    ],
)
def test_batched_greedy_equals_unbatched(which, kv, tiny, tmp_path):
    """Both KV layouts: dynamic (the CPU default) and static slots (the CUDA default, here without the CUDA graph)."""
    loaded = (
        tiny
        if which == "tiny"
        else load_base(ModelConfig(base_model="", device="cpu", cache_dir=ROOT / ".cache", cpu_dtype="float32"))
    )
    cfg = SchedulerConfig(max_batch=5, kv=kv)  # 8 requests > 5 rows: some wait, join later
    engine = Engine(loaded, tmp_path, scheduler=cfg)
    longest = max(len(engine._request(t, "base", GREEDY, False)[0].prompt_ids) for t in TWEETS)
    cfg.max_len = longest + 24  # static: the columns run out while rows run, so rows must be moved left (compaction)
    try:
        reqs = _staggered(engine, ["base"] * len(TWEETS), 20)
        assert engine.scheduler.max_rows_seen >= 3, "the requests must really have been decoded together"
        if kv == "static":
            st = engine.scheduler._static
            assert st.compactions > 0, "the test must exercise moving rows to the left"
            assert st.slot_moves > 0 and len(st.rows_used) > 1, "and moving rows down into smaller row buckets"
        tok = loaded.tokenizer
        for r in reqs:
            ref = _reference(loaded.model, r.prompt_ids, engine.eot_ids, 20, tok.pad_token_id)
            assert r.generated == ref, tok.decode(r.prompt_ids[-12:])
        assert len({tuple(r.generated) for r in reqs}) > 1  # not one degenerate output for everything
    finally:
        engine.close()


def test_static_kv_attention_width_buckets_keep_greedy_equal(tiny, tmp_path):
    """Static slots with several attention widths (256, 512, 600 columns) and dead-column compaction while rows run."""
    engine = Engine(
        tiny, tmp_path, scheduler=SchedulerConfig(max_batch=5, kv="static", max_len=600, long_reply_chars=10**6)
    )
    try:
        reqs = _staggered(engine, ["base"] * len(TWEETS), 110)
        st = engine.scheduler._static
        assert {256, 512} <= st.widths_used and st.compactions > 0
        for r in reqs:
            assert r.generated == _reference(tiny.model, r.prompt_ids, engine.eot_ids, 110, tiny.tokenizer.pad_token_id)
    finally:
        engine.close()


@pytest.mark.parametrize("kv", ["dynamic", "static"])
def test_mixed_adapter_batch_equals_per_adapter(kv, tiny_dir, tmp_path):
    adapters = tmp_path / "adapters"
    scratch = load_base(ModelConfig(base_model=str(tiny_dir), device="cpu", cpu_dtype="float32"))
    _make_adapter(scratch.model, adapters / "alpha", str(tiny_dir), seed=1)
    _make_adapter(scratch.model, adapters / "beta", str(tiny_dir), seed=2)
    loaded = load_base(ModelConfig(base_model=str(tiny_dir), device="cpu", cpu_dtype="float32"))
    engine = Engine(loaded, adapters, scheduler=SchedulerConfig(max_batch=8, kv=kv))
    try:
        variants = ["base", "lora:alpha", "lora:beta", "base", "lora:beta", "lora:alpha", "base", "lora:alpha"]
        engine.bank.load("alpha")
        engine.bank.load("beta")
        reqs = _staggered(engine, variants, 16)
        assert engine.scheduler.max_rows_seen >= 3
        if kv == "static":  # mixed steps went through the stacked adapters (the CUDA-graph form), not PEFT's forward
            st = engine.scheduler._static
            assert st.lora_steps > 0 and st.peft_steps == 0
        tok = loaded.tokenizer
        pm = engine.bank.peft_model
        for r, v in zip(reqs, variants):
            if v == "base":
                with pm.disable_adapter():
                    ref = _reference(pm, r.prompt_ids, engine.eot_ids, 16, tok.pad_token_id)
            else:
                pm.set_adapter(v.split(":")[1])
                ref = _reference(pm, r.prompt_ids, engine.eot_ids, 16, tok.pad_token_id)
            assert r.generated == ref, v
        # the adapters really change the output: same tweet, three variants, three different replies
        same_tweet = {v: engine.generate(TWEETS[0], v, GREEDY).raw for v in ("base", "lora:alpha", "lora:beta")}
        assert len(set(same_tweet.values())) == 3
        # an adapter first loaded by the worker (inside its inference mode) still toggles normally afterwards
        _make_adapter(scratch.model, adapters / "gamma", str(tiny_dir), seed=3)
        assert engine.generate(TWEETS[0], "lora:gamma", GREEDY).new_tokens > 0
        with (
            engine.bank.activate("gamma"),
            engine.bank.activate(None),
        ):  # PEFT sets requires_grad on gamma's weights here
            pass
    finally:
        engine.close()


def test_disconnecting_visitors_free_their_rows(tiny):
    """Issue 12.1: 8 visitors stream, 3 close their tab mid-stream (the generator is closed from another thread, as
    Gradio does), the other 5 finish, and the next request starts within a second of the model being free."""
    engine = Engine(tiny, ROOT / "no-adapters", scheduler=SchedulerConfig(max_batch=8))
    long = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=200)
    engine.scheduler.config.long_reply_chars = 10_000
    engine.eot_ids = []  # no random early end of turn: every stream runs its full length unless its visitor leaves
    gens = [engine.stream(TWEETS[i], "base", long) for i in range(8)]
    got = [threading.Event() for _ in range(8)]
    resume = [threading.Event() for _ in range(8)]
    results: dict[int, object] = {}
    errors: list[BaseException] = []

    def visitor(i: int) -> None:
        try:
            n = 0
            for ev in gens[i]:
                n += bool(ev.reply)
                if n == 3 and i < 3:
                    got[i].set()
                    resume[i].wait(30)  # suspended in the yield while another thread closes us
                if ev.done:
                    results[i] = ev.result
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for i in range(3):
        assert got[i].wait(60)
        gens[i].close()  # from this thread, while visitor i is parked in its yield
        resume[i].set()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(results) == [3, 4, 5, 6, 7], "the 5 visitors who stayed get complete replies"
    assert all(results[i].new_tokens > 3 for i in results)
    deadline = time.time() + 1.0  # the worker drops finished rows right after emitting their last token
    while engine.scheduler.load() != {"waiting": 0, "running": 0, "max_batch": 8} and time.time() < deadline:
        time.sleep(0.01)
    assert engine.scheduler.load() == {
        "waiting": 0,
        "running": 0,
        "max_batch": 8,
    }  # the 3 closed streams freed their rows
    t0 = time.perf_counter()
    first = next(ev for ev in engine.stream("Next visitor here", "base", GREEDY) if ev.reply)
    assert first.reply and time.perf_counter() - t0 < 1.0
    engine.close()


def test_cancel_frees_row_while_others_run(tiny):
    engine = Engine(tiny, ROOT / "no-adapters", scheduler=SchedulerConfig(max_batch=2))
    engine.scheduler.config.long_reply_chars = 10_000
    engine.eot_ids = []
    long = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=400)
    a = engine.scheduler.submit(engine._request("first", "base", long, False)[0])
    b = engine.scheduler.submit(engine._request("second", "base", long, False)[0])
    while a.request.started is None or b.request.started is None:
        time.sleep(0.005)
    c = engine.scheduler.submit(engine._request("third", "base", GREEDY, False)[0])
    assert c.position() == 1  # two rows busy: the third waits
    time.sleep(0.05)
    assert c.position() == 1 and c.request.started is None
    assert not a.request.finished.is_set(), "the running row must still be decoding when it is cancelled"
    a.cancel()
    evs = list(c.events())  # the freed row goes to the waiting request
    assert evs[-1].kind == "done" and c.request.generated
    b.cancel()
    engine.close()


def test_queue_bound_says_busy_and_shows_position(tiny):
    engine = Engine(tiny, ROOT / "no-adapters", scheduler=SchedulerConfig(max_batch=1, max_waiting=2))
    engine.scheduler.config.long_reply_chars = 10_000
    engine.eot_ids = []
    long = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=2000)
    running = engine.scheduler.submit(engine._request("running", "base", long, False)[0])
    while running.request.started is None:
        time.sleep(0.005)
    w1 = engine.scheduler.submit(engine._request("w1", "base", GREEDY, False)[0])
    w2 = engine.scheduler.submit(engine._request("w2", "base", GREEDY, False)[0])
    assert (w1.position(), w2.position()) == (1, 2)
    with pytest.raises(SchedulerBusy, match="busy.*try again"):
        engine.scheduler.submit(engine._request("w3", "base", GREEDY, False)[0])
    gen = engine.stream("w4", "base", GREEDY)
    with pytest.raises(SchedulerBusy):
        next(gen)
    w2_events = w2.events(poll_s=0.01)
    first = next(w2_events)
    assert first.kind == "queued" and first.position == 2
    w1.cancel()
    assert w2.position() == 1
    assert next(w2_events).position == 1  # the waiting visitor sees the queue move
    running.cancel()
    assert list(w2_events)[-1].kind == "done"
    engine.close()


def test_public_seed_never_touches_global_rng_nor_reproduces_arena(tiny):
    """Issue 12.2: Generate(seed=123) is reproducible, leaves torch's global RNG alone, and cannot reproduce an Arena
    reply."""
    engine = Engine(tiny, ROOT / "no-adapters")
    hot = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=30, seed=123)
    torch.manual_seed(7)
    state = torch.get_rng_state()
    one = engine.generate("Coffee before code?", "base", hot).raw
    two = engine.generate("Coffee before code?", "base", hot).raw
    assert one == two  # a public seed is reproducible for its own caller...
    assert torch.equal(torch.get_rng_state(), state)  # ...and never seeds or draws from the process-wide RNG
    arena = [
        [e.result.raw for e in list(engine.stream_many("Coffee before code?", ["base", "base"], hot, private=True))[-1]]
        for _ in range(3)
    ]
    flat = [r for pair in arena for r in pair]
    assert one not in flat  # the Arena's replies are not what seed 123 gives
    assert len(set(flat)) == len(flat)  # and each Arena reply has its own OS-seeded generator
    engine.close()


def test_scheduler_without_engine_runs_requests_directly(tiny):
    """The scheduler is usable on its own (the bench drives it this way): ids in, ids out."""
    from generation.adapters import AdapterBank

    sched = Scheduler(AdapterBank(tiny.model, tiny.name, ROOT / "no-adapters"), SchedulerConfig(max_batch=4))
    ids = tiny.tokenizer("hello there", add_special_tokens=False)["input_ids"]
    tickets = [sched.submit(Request(ids, None, GREEDY, [])) for _ in range(4)]
    outs = []
    for t in tickets:
        list(t.events())
        outs.append(t.request.generated)
    assert all(len(o) == GREEDY.max_new_tokens for o in outs) and len({tuple(o) for o in outs}) == 1
    sched.close()


def test_background_work_never_makes_visitors_wait(tiny):
    """Evaluate batches and the battle pool run as background rows: a visitor arriving meanwhile starts at the next
    step."""
    engine = Engine(tiny, ROOT / "no-adapters", scheduler=SchedulerConfig(max_batch=4, max_waiting=1))
    ids = tiny.tokenizer("background item", add_special_tokens=False)["input_ids"]
    long = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=100_000)  # run until cancelled
    bg = []
    for _ in range(6):
        r = Request(ids, None, long, [])
        r.background = True
        bg.append(
            engine.scheduler.submit(r)
        )  # beyond max_waiting, yet never 'busy': background work is not in the bound
    deadline = time.time() + 30
    while sum(t.request.started is not None for t in bg) < 3 and time.time() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)
    assert sum(t.request.started is not None for t in bg) == 3  # one row stays free for visitors
    t0 = time.perf_counter()
    visitor = engine.scheduler.submit(engine._request("a visitor", "base", GREEDY, False)[0])
    assert list(visitor.events())[-1].kind == "done"
    assert visitor.request.started - t0 < 1.0
    assert all(not t.request.finished.is_set() for t in bg[:3]), (
        "the visitor finished while the background rows still ran"
    )
    for t in bg:
        t.cancel()
    engine.close()


def test_join_wait_lets_newcomers_share_one_prefill_and_keeps_greedy_equal(tiny, tmp_path):
    """join_wait_ms: while a row decodes, two requests submitted 30 ms apart join in one prefill (not two), and the
    tokens are still those of one-at-a-time decoding."""
    engine = Engine(tiny, tmp_path, scheduler=SchedulerConfig(max_batch=4, kv="static", join_wait_ms=400, join_min=2))
    s = SamplingConfig(temperature=0.0, do_sample=False, max_new_tokens=60)
    try:
        first, second, third = (engine._request(t, "base", s, False)[0] for t in TWEETS[:3])
        tickets = [engine.scheduler.submit(first)]
        while len(first.generated) < 2:
            time.sleep(0.002)
        tickets.append(engine.scheduler.submit(second))
        time.sleep(0.03)
        tickets.append(engine.scheduler.submit(third))
        for t in tickets:
            for _ in t.events():
                pass
        assert engine.scheduler.prefills == 2, "the two newcomers must have joined together"
        for r in (first, second, third):
            assert r.generated == _reference(tiny.model, r.prompt_ids, engine.eot_ids, 60, tiny.tokenizer.pad_token_id)
    finally:
        engine.close()


def test_join_wait_never_delays_an_idle_scheduler(tiny, tmp_path):
    engine = Engine(tiny, tmp_path, scheduler=SchedulerConfig(max_batch=4, kv="static", join_wait_ms=5_000))
    try:
        t0 = time.perf_counter()
        engine.generate(TWEETS[0], "base", SamplingConfig(temperature=0.0, do_sample=False, max_new_tokens=4))
        assert time.perf_counter() - t0 < 4.0  # nothing was running: the request starts at once
    finally:
        engine.close()


def test_work_on_the_worker_thread_runs_between_steps_and_reports_errors(tiny, tmp_path):
    engine = Engine(tiny, tmp_path, scheduler=SchedulerConfig(kv="static", max_batch=2))
    sched = engine.scheduler
    try:
        assert sched.on_worker(threading.current_thread) is sched._thread
        with pytest.raises(ZeroDivisionError):
            sched.on_worker(lambda: 1 / 0)
        assert sched.capture_graphs() == 0  # CPU: no CUDA graphs, nothing captured
    finally:
        engine.close()
