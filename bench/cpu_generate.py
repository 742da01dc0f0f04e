"""CPU generation benchmark for the embedded model: time to first token, tokens/s, first-reply latency, app cold start.

Baseline = plain transformers `generate` on the model as transformers loads it by default (fp32, sdpa), measured in the
same run
as the project's path (generation.Engine: bf16 + eager attention, stop once the reply passes 280 chars). Target (issue
2):
first reply of <= 60 new tokens in <= 3 s on the 2-core dev box, after the one-time conversion.
Usage: python bench/cpu_generate.py [--runs 5] [--no-cold-start]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `make bench` installs the app's requirements, not the project itself
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TWEETS = [
    "Just shipped my first app to production on a Friday. What could go wrong?",
    "Coffee before code or code before coffee? Asking for a friend.",
    "Hot take: most meetings should be a two-line message.",
    "My sourdough starter has more followers than me now.",
    "What's the one book that changed how you think about money?",
]


def bench_plain(model_dir: Path, runs: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)  # transformers' defaults: fp32, sdpa
    from generation.chat import base_messages

    times, toks = [], []
    for i in range(runs + 1):
        enc = tok.apply_chat_template(
            base_messages(TWEETS[i % len(TWEETS)]), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=60, min_new_tokens=60, do_sample=False)
        dt = time.perf_counter() - t0
        if i:  # first call is warm-up
            times.append(dt)
            toks.append(out.shape[1] - enc["input_ids"].shape[1])
    return {
        "variant": "plain HF generate (fp32, sdpa)",
        "s_per_60_tokens": statistics.median(times),
        "tokens_per_s": sum(toks) / sum(times),
    }


def bench_engine(runs: int) -> dict:
    from generation import Engine, ModelConfig, SamplingConfig, load_base

    t0 = time.perf_counter()
    loaded = load_base(ModelConfig(device="cpu", cache_dir=ROOT / ".cache"))
    load_s = time.perf_counter() - t0
    engine = Engine(loaded, ROOT / "adapters")
    warm_s = engine.warm_up()  # the app does this at start-up (context.py)
    fixed = SamplingConfig(temperature=0.0, do_sample=False, max_new_tokens=60)
    # The first reply of a fresh app process (after its start-up warm-up), default sampling: what a visitor waits for.
    first = engine.generate(TWEETS[0], "base")
    ttfts, times, toks = [], [], []
    for i in range(runs):
        ev_t0 = time.perf_counter()
        r = engine.generate(TWEETS[(i + 1) % len(TWEETS)], "base", fixed)
        times.append(time.perf_counter() - ev_t0)
        ttfts.append(r.ttft)
        toks.append(r.new_tokens)
    return {
        "variant": "project engine (bf16, eager)",
        "load_s": load_s,
        "warm_up_s": warm_s,
        "first_reply_s": first.seconds,
        "first_reply_tokens": first.new_tokens,
        "first_reply_ttft_s": first.ttft,
        "ttft_s": statistics.median(ttfts),
        "s_per_60_tokens": statistics.median([t * 60 / max(n, 1) for t, n in zip(times, toks)]),
        "tokens_per_s": sum(toks) / sum(times),
    }


def bench_cold_start(port: int = 7899) -> float:
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--data-dir", "/tmp/bench-cold-data"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=2)
                return time.perf_counter() - t0
            except OSError:
                if p.poll() is not None or time.perf_counter() - t0 > 300:
                    return float("nan")
                time.sleep(0.25)
    finally:
        p.terminate()
        p.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-cold-start", action="store_true")
    a = ap.parse_args()
    from generation.embedded import ensure_converted

    t0 = time.perf_counter()
    model_dir = ensure_converted(ROOT / ".cache")
    conversion_s = time.perf_counter() - t0
    eng = bench_engine(a.runs)
    plain = bench_plain(model_dir, a.runs)
    cold = None if a.no_cold_start else bench_cold_start()
    rows = [plain, eng]
    print(f"{'variant':34} {'s / 60 tok':>10} {'tok/s':>8} {'ratio':>6}")
    for r in rows:
        print(
            f"{r['variant']:34} {r['s_per_60_tokens']:10.2f} {r['tokens_per_s']:8.1f} "
            f"{r['tokens_per_s'] / plain['tokens_per_s']:6.2f}"
        )
    print(
        f"first reply (default sampling, fresh process): {eng['first_reply_s']:.2f} s for {eng['first_reply_tokens']} "
        "tokens, "
        f"TTFT {eng['first_reply_ttft_s']:.2f} s; median TTFT {eng['ttft_s']:.2f} s; model load {eng['load_s']:.1f} s"
    )
    if cold is not None:
        print(f"app cold start (process start -> HTTP 200, cached model): {cold:.1f} s")
    result = {
        "date": date.today().isoformat(),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "conversion_or_cache_s": conversion_s,
        "rows": rows,
        "app_cold_start_s": cold,
    }
    out = ROOT / "bench" / "results" / f"cpu-generate-{platform.node() or 'cpu'}-{date.today().isoformat()}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
