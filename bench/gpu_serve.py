"""Serving a crowd on one GPU: today's serial Engine vs the scheduler (continuous batching, static KV, CUDA-graph
decode), same run, same model (Qwen3-8B shape, random bf16 weights), N visitor threads driving the real Engine. The new
path's decode step runs the grouped decode attention (generation/attention.py) on the smallest row bucket holding the
live rows; `new_visitors_join_wait_30ms` repeats the visitors' load with newcomers coalesced into fewer prefills.

Correctness first (before any timing): with the head sharpened (lm_head x30, so greedy choices are not bf16 ties between
near-equal random logits) the scheduler's batched greedy tokens are compared with plain `model.generate` one prompt at a
time, for the CUDA-graph path and the eager static and dynamic layouts; where they differ, the reference's top-2 logit
gap
at the first divergence is recorded (a gap inside bf16 rounding = tie-breaking, not a bug).

Run on the device: python bench/gpu_serve.py   (writes bench/results/gpu-serve-<kind>-<date>.json, or under $OUT)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from bench.gpu_common import qwen3_8b, write_results  # noqa: E402
from generation import Engine, LoadedModel, SamplingConfig  # noqa: E402
from generation.scheduler import SchedulerConfig  # noqa: E402

NEW = 64
SAMPLE = SamplingConfig(max_new_tokens=NEW)  # Qwen3 card sampling, 64-token replies
TWEETS = [json.loads(line)["tweet"] for line in open(ROOT / "assets" / "heldout_tweets.jsonl") if line.strip()]
RES: dict = {"new_tokens": NEW}
BUSY_LOCK = threading.Lock()
BUSY = [0]  # battles refused with 'busy, try again' (queue bound)
KV = {"kv": "auto"}  # --tiny-cpu: static slots on the CPU too (the app's CUDA layout), so every section runs


def sched(**kw) -> SchedulerConfig:
    """The app's scheduler defaults (what context.Settings gives without REPLY_ARENA_* variables) plus overrides."""
    return SchedulerConfig(**{**KV, **kw})


def save():
    print("wrote", write_results("gpu-serve", RES), flush=True)


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def loaded_for(model, tok, name="qwen3-8b-shape-random"):
    return LoadedModel(
        model, tok, name, model.device.type, str(model.dtype), None, int(model.get_memory_footprint()), 0.0, False
    )


def no_eos(engine):
    # every reply runs its full 64 tokens on both paths: the end-of-turn id is one whose head row is zeroed (never
    # sampled)
    engine.eot_ids = [engine.loaded.model.config.vocab_size - 1]
    return engine


def text_head(model, tok):
    """Zero the head rows of ids the bench tokenizer cannot decode: sampled tokens are then real text, so both paths
    stream chunks (and visitors can leave mid-reply). The head keeps its shape, so each step reads the same bytes."""
    import torch

    with torch.no_grad():
        model.lm_head.weight[len(tok) :].zero_()


# ---- correctness -------------------------------------------------------------------------------------------------
def reference(model, ids, new, eos: list[int] | None = None):
    """Plain greedy `generate` of one prompt: (tokens, per-step scores). eos=None: exactly `new` tokens (no end of
    turn); else the reply ends at one of the eos ids, as in the app."""
    import torch

    with torch.inference_mode():
        out = model.generate(
            input_ids=torch.tensor([ids], device=model.device),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=model.device),
            max_new_tokens=new,
            min_new_tokens=new if eos is None else None,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=eos,
            pad_token_id=0,
            output_scores=True,
            return_dict_in_generate=True,
        )
    return out.sequences[0, len(ids) :].tolist(), [s[0].float() for s in out.scores]


def greedy_refs(model, tok, n=8, new=24):
    """Plain transformers greedy decoding, one prompt at a time, with the head sharpened (x30)."""
    import torch

    engine = Engine(loaded_for(model, tok), "/tmp/no-adapters", scheduler=sched())
    greedy = SamplingConfig(do_sample=False, temperature=0.0, max_new_tokens=new)
    prompts = [engine._request(t, "base", greedy, False)[0].prompt_ids for t in TWEETS[:n]]
    with torch.no_grad():
        model.lm_head.weight.mul_(30)
    try:
        return prompts, [reference(model, p, new) for p in prompts]
    finally:
        with torch.no_grad():
            model.lm_head.weight.div_(30)


def greedy_check(model, tok, cfg: SchedulerConfig, prompts, refs, new=24) -> dict:
    import torch

    from generation.scheduler import Request

    engine = Engine(loaded_for(model, tok), "/tmp/no-adapters", scheduler=cfg)
    greedy = SamplingConfig(do_sample=False, temperature=0.0, max_new_tokens=new)
    with torch.no_grad():
        model.lm_head.weight.mul_(30)
    try:
        reqs = [Request(p, None, greedy, []) for p in prompts]
        tickets = [engine.scheduler.submit(r) for r in reqs]
        for t in tickets:
            list(t.events())
        rows = []
        for r, (ref, scores) in zip(reqs, refs):
            div = next((i for i, (a, b) in enumerate(zip(ref, r.generated)) if a != b), None)
            row = {"equal": ref == r.generated}
            if div is not None:
                top2 = scores[div].topk(2).values
                row.update(
                    first_divergence=div,
                    ref_top2_gap=float(top2[0] - top2[1]),
                    ref_top1=float(top2[0]),
                    ours_gap_in_ref=float(scores[div][ref[div]] - scores[div][r.generated[div]]),
                )
            rows.append(row)
        st = getattr(engine.scheduler, "_static", None)
        out = {
            "kv": cfg.kv,
            "cuda_graph": cfg.cuda_graph,
            "equal_sequences": sum(r["equal"] for r in rows),
            "of": len(rows),
            "token_agreement": sum(a == b for r, (ref, _) in zip(reqs, refs) for a, b in zip(ref, r.generated))
            / (len(rows) * new),
            "rows_batched": engine.scheduler.max_rows_seen,
            "rows": rows,
            "graph_steps": getattr(st, "graph_steps", 0),
            "eager_steps": getattr(st, "eager_steps", 0),
            "graph_failed": getattr(st, "graph_failed", None),
        }
    finally:
        with torch.no_grad():
            model.lm_head.weight.div_(30)
        engine.close()
        del engine
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return out


# ---- load ----------------------------------------------------------------------------------------------------------
def visitors(n: int, window: float, battle) -> dict:
    """n threads run battles back to back; a battle started before the deadline but not done by it is abandoned
    (the stream is closed, which cancels it). Counts replies completed inside the window."""
    lock = threading.Lock()
    done_battles, replies, abandoned = [], [0], [0]
    deadline = time.perf_counter() + window

    def worker(i):
        k = i
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            n_ok = battle(TWEETS[k % len(TWEETS)], deadline)
            k += n
            if n_ok < 0:  # refused: queue full
                continue
            with lock:
                replies[0] += n_ok
                if n_ok == 2:
                    done_battles.append(time.perf_counter() - t0)
                else:
                    abandoned[0] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    busy, BUSY[0] = BUSY[0], 0
    return {
        "visitors": n,
        "window_s": window,
        "replies": replies[0],
        "refused_busy": busy,
        "replies_per_min": replies[0] * 60 / window,
        "battles_done": len(done_battles),
        "battles_abandoned_at_deadline": abandoned[0],
        "battle_p50_s": pct(done_battles, 0.5),
        "battle_p95_s": pct(done_battles, 0.95),
        "drain_s": time.perf_counter() - t0 - window,
    }


def serial_battle(engine):
    def battle(tweet, deadline):
        n_ok = 0
        for v in ("base", "base"):  # today's BattleManager: reply A, then reply B
            gen = engine.stream(tweet, v, SAMPLE)
            done = False
            for ev in gen:
                if ev.done:
                    done = True
                elif time.perf_counter() > deadline:
                    break
            gen.close()
            if not done:
                return n_ok
            n_ok += 1
        return n_ok

    return battle


def batched_battle(engine, pair=("base", "base")):
    from generation.scheduler import SchedulerBusy

    def battle(tweet, deadline):
        gen = engine.stream_many(tweet, list(pair), SAMPLE, private=True)
        try:
            first = next(gen)
        except SchedulerBusy:
            with BUSY_LOCK:
                BUSY[0] += 1
            time.sleep(0.2)
            return -1
        last = first
        for last in gen:
            if time.perf_counter() > deadline and not all(e.done for e in last):
                gen.close()
                return sum(e.done for e in last)
        return sum(e.done for e in last)

    return battle


def single_latency(engine, reps=3) -> dict:
    ts, ttft, n = [], [], []
    for i in range(reps):
        t0 = time.perf_counter()
        r = engine.generate(TWEETS[i], "base", SAMPLE)
        ts.append(time.perf_counter() - t0)
        ttft.append(r.ttft)
        n.append(r.new_tokens)
    return {
        "reply_s_median": statistics.median(ts),
        "all_s": ts,
        "ttft_s_median": statistics.median(ttft),
        "new_tokens": n,
        "ms_per_token": 1000 * statistics.median(ts) / NEW,
    }


def make_adapter(model, path, strength: float = 1.0):
    """A random r16 adapter on the seed's 7 modules; strength scales B (a strong one must change greedy replies)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    pm = get_peft_model(
        model,
        LoraConfig(
            r=16,
            lora_alpha=16,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        ),
    )
    if strength != 1.0:
        with torch.no_grad():
            for n, p in pm.named_parameters():
                if "lora_B" in n:
                    p.mul_(strength)
    pm.save_pretrained(path)
    pm.unload()


def run_section(name, fn):
    t0 = time.perf_counter()
    try:
        RES[name] = fn()
    except Exception as exc:
        traceback.print_exc()
        RES[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    RES.setdefault("section_seconds", {})[name] = time.perf_counter() - t0
    print(name, json.dumps(RES[name])[:1500], flush=True)
    save()


def main():
    import torch

    from bench.serial_engine import Engine as SerialEngine
    from tests.support.tiny_qwen3 import build_tokenizer

    ap = argparse.ArgumentParser()
    ap.add_argument("--visitors", type=int, default=16)
    ap.add_argument("--serial-window", type=float, default=60)
    ap.add_argument("--window", type=float, default=30)
    ap.add_argument("--skip-nf4", action="store_true")
    ap.add_argument(
        "--tiny-cpu", action="store_true", help="dry run of the whole script on a tiny random Qwen3 on the CPU"
    )
    a = ap.parse_args()
    tok = build_tokenizer()
    if a.tiny_cpu:
        from tests.support.tiny_qwen3 import build_model

        model = build_model(tok, init_std=0.3)
        KV["kv"] = "static"
        a.skip_nf4 = True
    else:
        model = qwen3_8b()
    model.generation_config.pad_token_id = 0
    RES["prompt_tokens"] = [
        len(tok.apply_chat_template([{"role": "user", "content": t}], tokenize=True)) for t in TWEETS[:8]
    ]

    # correctness before timing
    prompts, refs = greedy_refs(model, tok)
    run_section(
        "greedy_graph", lambda: greedy_check(model, tok, SchedulerConfig(kv="static", cuda_graph=True), prompts, refs)
    )
    run_section(
        "greedy_static_eager",
        lambda: greedy_check(model, tok, SchedulerConfig(kv="static", cuda_graph=False), prompts, refs),
    )
    run_section("greedy_dynamic", lambda: greedy_check(model, tok, SchedulerConfig(kv="dynamic"), prompts, refs))

    def fp32():
        """The same check in fp32: batched-vs-single reduction order no longer flips near-ties, so equal tokens here
        mean the scheduler (static KV, CUDA graph) computes the same function as plain generate."""
        model.float()
        try:
            p32, r32 = greedy_refs(model, tok)
            return greedy_check(model, tok, SchedulerConfig(kv="static", cuda_graph=True), p32, r32)
        finally:
            model.to(torch.bfloat16)
            torch.cuda.empty_cache()

    run_section("greedy_graph_fp32", fp32)

    def lora_fp32():
        """Mixed base/LoRA rows in fp32: the stacked adapters' CUDA-graph step against PEFT's generate with the
        adapter set (or disabled), one prompt at a time."""
        from generation.scheduler import Request

        model.float()
        engine = None
        try:
            make_adapter(model, "/tmp/adapters-fp32/demo", strength=20.0)
            engine = Engine(loaded_for(model, tok), "/tmp/adapters-fp32", scheduler=SchedulerConfig(kv="static"))
            engine.bank.load("demo")
            pm = engine.bank.peft_model
            greedy = SamplingConfig(do_sample=False, temperature=0.0, max_new_tokens=24)
            prompts = [engine._request(t, "base", greedy, False)[0].prompt_ids for t in TWEETS[:8]]
            adapters = [None, "demo"] * 4
            with torch.no_grad():
                model.lm_head.weight.mul_(30)
            refs = []
            for p, name in zip(prompts, adapters):
                if name is None:
                    with pm.disable_adapter():
                        refs.append(reference(pm, p, 24)[0])
                else:
                    pm.set_adapter(name)
                    refs.append(reference(pm, p, 24)[0])
            with pm.disable_adapter():
                base_refs = [reference(pm, p, 24)[0] for p in prompts]
            reqs = [Request(p, name, greedy, []) for p, name in zip(prompts, adapters)]
            for t in [engine.scheduler.submit(r) for r in reqs]:
                list(t.events())
            st = engine.scheduler._static
            return {
                "equal_sequences": sum(r.generated == ref for r, ref in zip(reqs, refs)),
                "of": len(reqs),
                "lora_rows_differing_from_base": sum(
                    ref != base_ref for name, ref, base_ref in zip(adapters, refs, base_refs) if name is not None
                ),
                "stacked_lora_steps": st.lora_steps,
                "peft_steps": st.peft_steps,
                "graph_steps": st.graph_steps,
                "graph_failed": st.graph_failed,
            }
        finally:
            with torch.no_grad():
                model.lm_head.weight.div_(30)
            if engine is not None:
                engine.close()
                if engine.bank.peft_model is not None:
                    engine.bank.peft_model.unload()
            model.to(torch.bfloat16)
            torch.cuda.empty_cache() if torch.cuda.is_available() else None

    run_section("greedy_lora_graph_fp32", lora_fp32)
    text_head(model, tok)

    def profile():
        e = no_eos(Engine(loaded_for(model, tok), "/tmp/no-adapters", scheduler=sched(profile=True)))
        e.warm_up()
        st = e.scheduler._static
        st.timings = {"prepare": 0.0, "forward": 0.0}
        steps0 = e.scheduler.steps
        out = {"single": single_latency(e, 2)}
        n = e.scheduler.steps - steps0
        out["per_step_ms_single"] = {k: 1000 * v / max(1, n) for k, v in st.timings.items()}
        st.timings = {"prepare": 0.0, "forward": 0.0}
        steps0 = e.scheduler.steps
        out["visitors"] = visitors(16, 8, batched_battle(e))
        n = e.scheduler.steps - steps0
        out["per_step_ms_16_visitors"] = {k: 1000 * v / max(1, n) for k, v in st.timings.items()}
        out["graph_widths"] = sorted(st.graphs)
        e.close()
        return out

    run_section("profile", profile)

    # today's path
    serial = no_eos(SerialEngine(loaded_for(model, tok), "/tmp/no-adapters"))
    run_section("serial_single", lambda: single_latency(serial, 2))
    run_section("serial_visitors", lambda: visitors(a.visitors, a.serial_window, serial_battle(serial)))
    serial = None  # free its memory before the scheduler loads

    # the scheduler (app default on CUDA: static KV + CUDA graph)
    engine = no_eos(Engine(loaded_for(model, tok), "/tmp/adapters", scheduler=sched()))
    run_section("new_warmup_s", engine.warm_up)  # the first decode step captures the CUDA graph
    run_section("new_single", lambda: single_latency(engine, 5))
    engine.scheduler.config.join_wait_ms = 0.0  # newcomers join at the next step; the app's CUDA default is below
    run_section("new_visitors", lambda: visitors(a.visitors, a.window, batched_battle(engine)))

    def joined(ms):
        """The same load with join_wait_ms: newcomers wait up to `ms` so that several share one prefill."""
        engine.scheduler.config.join_wait_ms = ms
        p0 = engine.scheduler.prefills
        try:
            out = visitors(a.visitors, a.window, batched_battle(engine))
        finally:
            engine.scheduler.config.join_wait_ms = -1.0  # the app's default from here on
        out["prefills"] = engine.scheduler.prefills - p0
        return out

    run_section("new_visitors_join_wait_30ms", lambda: joined(30.0))
    run_section("new_visitors_64", lambda: visitors(64, a.window / 2, batched_battle(engine)))
    st = engine.scheduler._static
    RES["new_path_steps"] = {
        "graph": st.graph_steps,
        "eager": st.eager_steps,
        "graph_failed": st.graph_failed,
        "compactions": st.compactions,
        "graphs_rows_width": sorted(st.graphs),
        "row_buckets_used": sorted(st.rows_used),
        "slot_moves": st.slot_moves,
        "prefills": engine.scheduler.prefills,
        "max_rows": engine.scheduler.max_rows_seen,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
    }

    # base vs LoRA battles: adapter rows through the stacked adapters (generation/lora_rows.py), graph-captured
    def lora():
        make_adapter(model, "/tmp/adapters/demo")
        engine.bank.load("demo")
        return visitors(a.visitors, a.window / 2, batched_battle(engine, ("base", "lora:demo")))

    run_section("new_visitors_base_vs_lora", lora)
    RES["lora_steps"] = {"stacked_graph": st.lora_steps, "peft_eager": st.peft_steps, "graphs": sorted(st.graphs)}
    engine.close()
    if engine.bank.peft_model is not None:
        engine.bank.peft_model.unload()
    engine = None
    gc.collect()

    if not a.skip_nf4:

        def nf4():
            from transformers import AutoModelForCausalLM

            nonlocal model
            model.save_pretrained("/tmp/q3")
            del model
            gc.collect()
            torch.cuda.empty_cache()
            from generation.loader import nf4_config

            q = nf4_config()
            qm = AutoModelForCausalLM.from_pretrained(
                "/tmp/q3", quantization_config=q, device_map={"": 0}, dtype=torch.bfloat16
            )
            qm.generation_config.pad_token_id = 0
            ql = loaded_for(qm, tok, "qwen3-8b-shape-random-nf4")
            out = {"memory_gb": qm.get_memory_footprint() / 1e9}
            ser = no_eos(SerialEngine(ql, "/tmp/no-adapters"))
            out["serial_single"] = single_latency(ser, 1)
            del ser
            e = no_eos(Engine(ql, "/tmp/no-adapters", scheduler=sched()))
            e.warm_up()
            out["new_single"] = single_latency(e, 2)
            out["new_visitors"] = visitors(a.visitors, a.window, batched_battle(e))
            s = e.scheduler._static
            out["steps"] = {
                "graph": s.graph_steps,
                "eager": s.eager_steps,
                "graph_failed": s.graph_failed,
                "graph_widths": sorted(s.graphs),
            }
            e.close()
            return out

        run_section("nf4", nf4)

    # the table
    s1, n1 = RES.get("serial_single", {}), RES.get("new_single", {})
    sv, nv = RES.get("serial_visitors", {}), RES.get("new_visitors", {})
    print(f"\n{'workload (Qwen3-8B shape, bf16, 64-token replies)':58} {'today':>10} {'new':>10} {'ratio':>7}")

    def line(label, a_, b_, fmt="{:10.2f}", higher_better=True):
        if a_ is None or b_ is None:
            print(f"{label:58} {str(a_):>10} {str(b_):>10}")
            return
        r = (b_ / a_) if higher_better else (a_ / b_)
        print(f"{label:58} {fmt.format(a_)} {fmt.format(b_)} {r:6.1f}x")

    line("one visitor, one reply (s)", s1.get("reply_s_median"), n1.get("reply_s_median"), higher_better=False)
    line(
        f"{a.visitors} visitors battling: replies/min", sv.get("replies_per_min"), nv.get("replies_per_min"), "{:10.1f}"
    )
    line(
        f"{a.visitors} visitors: p95 complete battle (s; today = of battles done)",
        sv.get("battle_p95_s"),
        nv.get("battle_p95_s"),
        higher_better=False,
    )
    print(
        json.dumps(
            {
                k: RES.get(k, {}).get("equal_sequences")
                for k in (
                    "greedy_graph",
                    "greedy_static_eager",
                    "greedy_dynamic",
                    "greedy_graph_fp32",
                    "greedy_lora_graph_fp32",
                )
            }
        )
    )
    print("profile", json.dumps({k: v for k, v in RES.get("profile", {}).items() if k.startswith("per_step")}))
    save()


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
