"""Generate tab: one tweet, several variants side by side, streamed. Wiring only; the work is in engine.py."""
from __future__ import annotations

import json

import gradio as gr

from security import inert

from .config import SamplingConfig
from .scheduler import SchedulerBusy
from .present import stats_line, variant_label

MAX_SLOTS = 6  # base + RAG + up to four adapters side by side


def _examples(path) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line)["tweet"] for line in f if line.strip()][:8]
    except (OSError, ValueError, KeyError):
        return []


def build_generate_tab(ctx) -> None:
    engine = ctx.engine
    with gr.Tab("Generate", id="generate"):
        gr.Markdown(f"**Model:** {inert(ctx.model_banner())}", elem_id="model-banner")
        with gr.Row():
            with gr.Column(scale=3):
                tweet = gr.Textbox(label="Tweet", lines=3, placeholder="Paste or type a tweet (up to 280 characters)", elem_id="gen-tweet",
                                   info="At most 280 characters.")
                ex = _examples(ctx.settings.heldout)
                if ex:
                    gr.Examples(examples=[[t] for t in ex], inputs=[tweet], label="Example tweets (click one)")
            with gr.Column(scale=2):
                choices = engine.variants() if engine else []
                variants = gr.CheckboxGroup(choices=[(variant_label(v), v) for v in choices], value=[v for v in choices if v in ("base", "rag")],
                                            label="Variants", elem_id="gen-variants")
                refresh = gr.Button("Refresh adapter list", size="sm")
                can_think = bool(engine and engine.supports_thinking)
                thinking = gr.Checkbox(label="Thinking mode", value=False, interactive=can_think,
                                       info="Qwen3 <think> reasoning, shown apart from the reply" if can_think else "This model's chat template has no thinking mode")
                d = engine.default_sampling(False) if engine else SamplingConfig()
                with gr.Accordion("Sampling (Qwen3 card defaults)", open=False):
                    temperature = gr.Slider(0.0, 1.5, value=d.temperature, step=0.05, label="temperature (0 = greedy)")
                    top_p = gr.Slider(0.05, 1.0, value=d.top_p, step=0.05, label="top-p")
                    top_k = gr.Slider(0, 100, value=d.top_k, step=1, label="top-k")
                    min_p = gr.Slider(0.0, 0.5, value=d.min_p, step=0.01, label="min-p")
                    max_new = gr.Slider(16, 2048, value=d.max_new_tokens, step=16, label="max new tokens")
                    rep = gr.Slider(1.0, 2.0, value=d.repetition_penalty, step=0.05, label="repetition penalty")
                    seed = gr.Number(value=None, label="seed (empty = random)", precision=0)
        go = gr.Button("Generate", variant="primary", elem_id="gen-go", interactive=engine is not None)
        status = gr.Markdown("", elem_id="gen-status")
        slots = []
        with gr.Row(equal_height=False):
            for i in range(MAX_SLOTS):
                with gr.Column(visible=False, min_width=240) as col:
                    title = gr.Markdown(f"### slot {i}")
                    reply = gr.Textbox(label="Reply", lines=4, interactive=False, buttons=["copy"], elem_id=f"gen-reply-{i}", elem_classes=["gen-reply"])
                    stats = gr.Markdown("", elem_id=f"gen-stats-{i}")
                    with gr.Accordion("Thinking", open=False, visible=False) as think_acc:
                        think = gr.Markdown("")
                    with gr.Accordion("Retrieved examples", open=False, visible=False) as ret_acc:
                        retrieved = gr.Markdown("")
                slots.append((col, title, reply, stats, think_acc, think, ret_acc, retrieved))
        flat = [c for s in slots for c in s]

        def on_thinking(on: bool):
            s = engine.default_sampling(on) if engine else SamplingConfig()
            return s.temperature, s.top_p, s.top_k, s.min_p, s.max_new_tokens

        thinking.change(on_thinking, [thinking], [temperature, top_p, top_k, min_p, max_new])

        def on_refresh(current):
            vs = engine.variants() if engine else []
            return gr.update(choices=[(variant_label(v), v) for v in vs], value=[v for v in current if v in vs])

        refresh.click(on_refresh, [variants], [variants])

        def run(text, chosen, think_on, t, p, k, mp, mx, rp, sd):
            from generation.chat import validate_tweet

            if engine is None:
                raise gr.Error(ctx.model_banner())
            try:
                text = validate_tweet(text)
            except ValueError as exc:
                raise gr.Error(str(exc))
            chosen = [v for v in (chosen or []) if v in engine.variants()][:MAX_SLOTS]
            if not chosen:
                raise gr.Error("Pick at least one variant to generate with.")
            sampling = SamplingConfig(temperature=float(t), top_p=float(p), top_k=int(k), min_p=float(mp), max_new_tokens=int(mx),
                                      repetition_penalty=float(rp), seed=None if sd in (None, "") else int(sd))
            state = [[gr.update(visible=False)] + [gr.update()] * 7 for _ in range(MAX_SLOTS)]
            for i, v in enumerate(chosen):
                state[i] = [gr.update(visible=True), gr.update(value=f"### {inert(variant_label(v))}"), gr.update(value=""),
                            gr.update(value="waiting…"), gr.update(visible=False), gr.update(value=""), gr.update(visible=False), gr.update(value="")]
            yield [x for s in state for x in s] + [gr.update(value="Generating…")]
            errors: dict[int, str] = {}
            try:  # every chosen variant in one batch on the scheduler, all boxes streaming together
                for evs in engine.stream_many(text, chosen, sampling, bool(think_on), errors="event"):
                    waiting = max((ev.queued for ev in evs), default=0)
                    for i, ev in enumerate(evs):
                        st = state[i]
                        if ev.error is not None:
                            if i not in errors:
                                errors[i] = f"{variant_label(ev.variant)}: {ev.error}"
                                st[3] = gr.update(value=f"⚠️ {inert(ev.error)}")
                            continue
                        st[2] = gr.update(value=ev.reply)
                        st[4] = gr.update(visible=bool(ev.thinking))
                        st[5] = gr.update(value=inert(ev.thinking))
                        if ev.done:
                            r = ev.result
                            st[3] = gr.update(value=stats_line(r))
                            if r.retrieved:
                                from retrieval import format_examples_markdown

                                st[6] = gr.update(visible=True)
                                st[7] = gr.update(value=format_examples_markdown(r.retrieved))
                        else:
                            st[3] = gr.update(value=f"waiting: position {ev.queued} in the queue…" if ev.queued else "generating…")
                    note = f"Waiting for the model: position {waiting} in the queue…" if waiting else "Generating…"
                    yield [x for s in state for x in s] + [gr.update(value=note)]
            except SchedulerBusy as exc:
                raise gr.Error(str(exc))
            done = "Done." if not errors else "Done with errors: " + "; ".join(inert(e) for e in errors.values())
            yield [x for s in state for x in s] + [gr.update(value=done)]

        go.click(run, [tweet, variants, thinking, temperature, top_p, top_k, min_p, max_new, rep, seed], flat + [status],
                 concurrency_limit=64, concurrency_id="model")  # the scheduler batches and bounds; see generation/scheduler.py
