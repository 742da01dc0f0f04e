"""Where a decode step's time goes: the scheduler's static-KV step on the Qwen3-8B shape, kernel by kernel.

Fills the static batch with R rows through the scheduler's own prefill, then times R-row decode steps (CUDA graph replay
and eager) and prints torch.profiler's kernel table for the eager step. `bench/gpu_serve.py` gives the end-to-end
numbers; this one says which kernels to work on.

    python bench/gpu_serve_profile.py [--rows 1,32] [--steps 20]      (writes gpu-serve-profile-<kind>-<date>.json)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from bench.gpu_common import qwen3_8b, write_results  # noqa: E402
from bench.gpu_serve import TWEETS, loaded_for  # noqa: E402
from generation import Engine, SamplingConfig  # noqa: E402
from generation.scheduler import SchedulerConfig, sample_next  # noqa: E402

GREEDY = SamplingConfig(do_sample=False, temperature=0.0, max_new_tokens=10_000)


def fill(engine, rows: int):
    """A fresh static batch holding `rows` running requests (prompts of the held-out tweets)."""
    sched = engine.scheduler
    batch = sched._new_batch()
    reqs = [engine._request(TWEETS[i % len(TWEETS)], "base", GREEDY, False)[0] for i in range(rows)]
    sched._prefill(batch, reqs)
    return batch


def step(batch):
    logits = batch.decode()
    for r, t in zip(batch.rows, sample_next(logits, batch.rows)):
        r.generated.append(t)


def timed(batch, n: int) -> float:
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        step(batch)
    sync()
    return 1000 * (time.perf_counter() - t0) / n


def main():
    import torch
    from torch.profiler import ProfilerActivity, profile

    from tests.support.tiny_qwen3 import build_tokenizer

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1,32")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--kernels", type=int, default=25)
    ap.add_argument("--tiny-cpu", action="store_true", help="dry run on a tiny random Qwen3 on the CPU")
    a = ap.parse_args()
    tok = build_tokenizer()
    if a.tiny_cpu:
        from tests.support.tiny_qwen3 import build_model

        model = build_model(tok, init_std=0.3)
    else:
        model = qwen3_8b()
    res: dict = {"steps": a.steps, "rows": {}}
    for graph in (True, False):
        cfg = SchedulerConfig(kv="static", cuda_graph=graph, max_batch=32)
        engine = Engine(loaded_for(model, tok), "/tmp/no-adapters", scheduler=cfg)
        with torch.inference_mode():
            for rows in [int(x) for x in a.rows.split(",")]:
                batch = fill(engine, rows)
                timed(batch, 3)  # warm-up (captures the graph)
                ms = timed(batch, a.steps)
                key = f"rows={rows}"
                res["rows"].setdefault(key, {})["graph_ms_per_step" if graph else "eager_ms_per_step"] = ms
                res["rows"][key]["width"] = sorted(batch.widths_used)
                res["rows"][key]["row_bucket"] = getattr(batch, "R", batch.S)
                print(key, "graph" if graph else "eager", f"{ms:.2f} ms/step", flush=True)
                if not graph:
                    acts = [ProfilerActivity.CUDA] if torch.cuda.is_available() else [ProfilerActivity.CPU]
                    with profile(activities=acts) as prof:
                        for _ in range(5):
                            step(batch)
                        torch.cuda.synchronize() if torch.cuda.is_available() else None
                    table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=a.kernels)
                    print(table, flush=True)
                    res["rows"][key]["kernels"] = [
                        {"name": e.key[:120], "cuda_ms_per_step": e.device_time_total / 1000 / 5, "calls": e.count / 5}
                        for e in sorted(prof.key_averages(), key=lambda e: -e.device_time_total)[: a.kernels]
                    ]
        engine.close()
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "kernels"} for k, v in res["rows"].items()}))
    print("wrote", write_results("gpu-serve-profile", res))


if __name__ == "__main__":
    main()
