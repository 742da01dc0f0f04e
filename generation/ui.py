"""Generate tab: one tweet, several variants side by side, streamed. Wiring only; the work is in engine.py."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import gradio as gr

from common.text import TWEET_LIMIT, validate_tweet
from security import RateLimited, inert

from .config import SamplingConfig
from .form import char_counter, parse_seed
from .present import format_examples_markdown, stats_line
from .scheduler import SchedulerBusy
from .variants import friendly_name

if TYPE_CHECKING:  # type-only: generation never imports the app layer at run time
    from context import AppContext

MAX_SLOTS = 6  # base + RAG + up to four adapters side by side


def _examples(path) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line)["tweet"] for line in f if line.strip()][:8]
    except (OSError, ValueError, KeyError):
        return []


def build_generate_tab(ctx: AppContext) -> None:
    engine = ctx.engine
    with gr.Tab("Generate", id="generate"):
        gr.Markdown(f"**Model:** {inert(ctx.model_banner())}", elem_id="model-banner")
        with gr.Row():
            with gr.Column(scale=3):
                tweet = gr.Textbox(
                    label="Tweet",
                    lines=3,
                    placeholder=f"Paste or type a tweet (up to {TWEET_LIMIT} characters)",
                    elem_id="gen-tweet",
                    info=f"At most {TWEET_LIMIT} characters.",
                )
                counter = gr.Markdown(char_counter(""), elem_id="gen-counter")
                ex = _examples(ctx.settings.heldout)
                if ex:
                    gr.Examples(examples=[[t] for t in ex], inputs=[tweet], label="Example tweets (click one)")
            with gr.Column(scale=2):
                choices = engine.variants() if engine else []
                variants = gr.CheckboxGroup(
                    choices=[(friendly_name(v), v) for v in choices],
                    value=[v for v in choices if v in ("base", "rag")],
                    label="Variants",
                    elem_id="gen-variants",
                )
                refresh = gr.Button("Refresh adapter list", size="sm")
                can_think = bool(engine and engine.supports_thinking)
                thinking = gr.Checkbox(
                    label="Thinking mode",
                    value=False,
                    interactive=can_think,
                    info="Qwen3 <think> reasoning, shown apart from the reply"
                    if can_think
                    else "This model's chat template has no thinking mode",
                )
                d = engine.default_sampling(False) if engine else SamplingConfig()
                with gr.Accordion("Sampling (Qwen3 card defaults)", open=False):
                    temperature = gr.Slider(0.0, 1.5, value=d.temperature, step=0.05, label="temperature (0 = greedy)")
                    top_p = gr.Slider(0.05, 1.0, value=d.top_p, step=0.05, label="top-p")
                    top_k = gr.Slider(0, 100, value=d.top_k, step=1, label="top-k")
                    min_p = gr.Slider(0.0, 0.5, value=d.min_p, step=0.01, label="min-p")
                    max_new = gr.Slider(16, 2048, value=d.max_new_tokens, step=16, label="max new tokens")
                    rep = gr.Slider(1.0, 2.0, value=d.repetition_penalty, step=0.05, label="repetition penalty")
                    seed = gr.Textbox(
                        value="",
                        label="seed",
                        placeholder="empty = random",
                        elem_id="gen-seed",
                        info="A whole number repeats a reply exactly; leave empty for a fresh one each time.",
                    )
        go = gr.Button("Generate", variant="primary", elem_id="gen-go", interactive=engine is not None)
        status = gr.Markdown("", elem_id="gen-status")
        slots = []
        with gr.Row(equal_height=False):
            for i in range(MAX_SLOTS):
                with gr.Column(visible=False, min_width=240) as col:
                    title = gr.Markdown(f"### slot {i}")
                    reply = gr.Textbox(
                        label="Reply",
                        lines=4,
                        interactive=False,
                        buttons=["copy"],
                        elem_id=f"gen-reply-{i}",
                        elem_classes=["gen-reply"],
                    )
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
            return gr.update(choices=[(friendly_name(v), v) for v in vs], value=[v for v in current if v in vs])

        refresh.click(on_refresh, [variants], [variants])

        tweet.change(char_counter, [tweet], [counter], queue=False, show_progress="hidden")  # typing and example clicks

        def run(text, chosen, think_on, t, p, k, mp, mx, rp, sd, request: gr.Request):
            keep = [gr.update()] * len(flat)  # a refused request leaves earlier replies where they are

            if engine is None:
                yield keep + [gr.update(value=f"⚠️ {inert(ctx.model_banner())}")]
                return
            try:
                text = validate_tweet(text)
                seed_value = parse_seed(sd)
            except ValueError as exc:
                yield keep + [gr.update(value=f"⚠️ {inert(str(exc))}")]
                return
            chosen = [v for v in (chosen or []) if v in engine.variants()][:MAX_SLOTS]
            if not chosen:
                yield keep + [gr.update(value="⚠️ Pick at least one variant to generate with.")]
                return
            if ctx.limits is not None:  # per address, before any model time is spent
                try:
                    ctx.limits.generate.hit([ctx.client_address(request)])
                except RateLimited as exc:
                    yield keep + [gr.update(value=f"⚠️ {inert(str(exc))}")]
                    return
            sampling = SamplingConfig(
                temperature=float(t),
                top_p=float(p),
                top_k=int(k),
                min_p=float(mp),
                max_new_tokens=int(mx),
                repetition_penalty=float(rp),
                seed=seed_value,
            )
            state = [[gr.update(visible=False)] + [gr.update()] * 7 for _ in range(MAX_SLOTS)]
            for i, v in enumerate(chosen):
                state[i] = [
                    gr.update(visible=True),
                    gr.update(value=f"### {inert(friendly_name(v))}"),
                    gr.update(value=""),
                    gr.update(value="waiting…"),
                    gr.update(visible=False),
                    gr.update(value=""),
                    gr.update(visible=False),
                    gr.update(value=""),
                ]
            yield [x for s in state for x in s] + [gr.update(value="Generating…")]
            errors: dict[int, str] = {}
            shown = ["waiting…"] * len(chosen)  # the stats line as last sent: resent only when it changes
            try:  # every chosen variant in one batch on the scheduler, all boxes streaming together
                for evs in engine.stream_many(text, chosen, sampling, bool(think_on), errors="event"):
                    waiting = max((ev.queued for ev in evs), default=0)
                    for i, ev in enumerate(evs):
                        st = state[i]
                        st[3] = gr.update()
                        if ev.error is not None:
                            if i not in errors:
                                errors[i] = f"{friendly_name(chosen[i])}: {ev.error}"
                                shown[i] = f"⚠️ {inert(ev.error)}"
                                st[3] = gr.update(value=shown[i])
                            continue
                        st[2] = gr.update(value=ev.reply)
                        st[4] = gr.update(visible=bool(ev.thinking))
                        st[5] = gr.update(value=inert(ev.thinking))
                        line = (
                            stats_line(ev.result)
                            if ev.done
                            else f"waiting: position {ev.queued} in the queue…"
                            if ev.queued
                            else "generating…"
                        )
                        if line != shown[i]:
                            shown[i] = line
                            st[3] = gr.update(value=line)
                        if ev.done and ev.result.retrieved:
                            st[6] = gr.update(visible=True)
                            st[7] = gr.update(value=format_examples_markdown(ev.result.retrieved))
                    if all(ev.done or ev.error is not None for ev in evs):
                        # the last step's updates travel with "Done." so no stats line is read as final too early
                        break
                    note = f"Waiting for the model: position {waiting} in the queue…" if waiting else "Generating…"
                    yield [x for s in state for x in s] + [gr.update(value=note)]
            except SchedulerBusy as exc:
                yield keep + [gr.update(value=f"⚠️ {inert(str(exc))}")]
                return
            for i, line in enumerate(shown):  # every final stats line goes out once more with the status
                state[i][3] = gr.update(value=line)
            done = "Done." if not errors else "Done with errors: " + "; ".join(inert(e) for e in errors.values())
            yield [x for s in state for x in s] + [gr.update(value=done)]

        go.click(
            run,
            [tweet, variants, thinking, temperature, top_p, top_k, min_p, max_new, rep, seed],
            flat + [status],
            concurrency_limit=64,
            concurrency_id="model",
        )  # the scheduler batches and bounds; see generation/scheduler.py
