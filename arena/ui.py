"""Arena and Leaderboard tabs. Wiring only: battles.py validates, store.py persists, significance.py computes."""
from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr

from generation import AdapterError
from generation.scheduler import SchedulerBusy
from security import AdminRequired, inert

from .battles import NotEnoughContenders, VoteRefused
from .plots import rating_ci_figure, winrate_heatmap
from .service import LEADERBOARD_COLUMNS, arena_for, leaderboard, leaderboard_rows, random_heldout_tweet, verdicts_markdown

VOTES = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}


def _client_id(request: gr.Request | None) -> str:
    """Who is voting, for rate limits: the proxy's forwarded address on Spaces, else the socket peer. Only a salted hash is stored."""
    if request is None:
        return "unknown"
    fwd = (request.headers or {}).get("x-forwarded-for", "") if hasattr(request, "headers") else ""
    host = fwd.split(",")[0].strip() if fwd else getattr(getattr(request, "client", None), "host", "") or ""
    return host or "unknown"


def build_arena_tabs(ctx) -> None:
    manager = arena_for(ctx) if ctx.engine is not None else None
    store = ctx.extras.get("votes")
    from evaluation.significance import VERDICT_HELP

    with gr.Tab("Arena", id="arena"):
        gr.Markdown("Two anonymous models reply to the same tweet. Vote for the better reply; the names are revealed after your vote.")
        battle_id = gr.State(None)
        with gr.Row():
            tweet = gr.Textbox(label="Tweet", lines=2, scale=4, elem_id="arena-tweet", placeholder="Type a tweet or draw one from the held-out pool")
            with gr.Column(scale=1):
                new_tweet = gr.Button("New tweet", elem_id="arena-new-tweet")
                start = gr.Button("Start battle", variant="primary", elem_id="arena-start", interactive=manager is not None)
        with gr.Row():
            reply_a = gr.Textbox(label="Reply A", lines=4, interactive=False, elem_id="arena-a")
            reply_b = gr.Textbox(label="Reply B", lines=4, interactive=False, elem_id="arena-b")
        with gr.Row():
            buttons = {k: gr.Button(label, interactive=False, elem_id=f"vote-{k}") for k, label in VOTES.items()}
        reveal = gr.Markdown("", elem_id="arena-reveal")
        next_btn = gr.Button("Next battle", visible=False, elem_id="arena-next")

    with gr.Tab("Leaderboard", id="leaderboard") as lb_tab:
        include_flagged = gr.Checkbox(label="Include votes flagged as revealing the contender", value=False)
        counts = gr.Markdown("", elem_id="lb-counts")
        table = gr.Dataframe(headers=LEADERBOARD_COLUMNS, interactive=False, elem_id="lb-table")
        with gr.Row():
            ci_plot = gr.Plot(label="Ratings with 95% CIs")
            heat = gr.Plot(label="Pairwise win rates")
        verdicts = gr.Markdown("")
        with gr.Accordion("How the verdicts are decided", open=False):
            gr.Markdown(VERDICT_HELP)
        with gr.Accordion("Export votes (admin)", open=False):
            with gr.Row():
                fmt = gr.Radio(["jsonl", "csv"], value="jsonl", label="format")
                export_btn = gr.Button("Export")
            export_file = gr.File(label="export", interactive=False)
            export_msg = gr.Markdown("")

    # ---- handlers --------------------------------------------------------------------------------------------
    lock_all = [gr.update(interactive=False)] * len(buttons)

    def on_new_tweet():
        return random_heldout_tweet(ctx.settings.heldout)

    def on_start(text, request: gr.Request):
        if manager is None:
            raise gr.Error(ctx.model_banner())
        pool = ctx.extras.get("battle_pool")
        if not (text or "").strip():
            if pool is not None:  # an empty box: a held-out tweet with pre-generated replies, served without the GPU
                pool.refresh()  # picks up a newly trained adapter
                try:
                    b = manager.new_pool_battle(request.session_hash, [request.session_hash, "client:" + _client_id(request)], pool)
                except ValueError as exc:
                    raise gr.Error(str(exc))
                if b is not None:
                    yield [b.tweet, b.battle_id, b.reply_a, b.reply_b, "", gr.update(visible=False)] + [gr.update(interactive=True)] * len(buttons)
                    return
            text = random_heldout_tweet(ctx.settings.heldout)
        try:
            for ra, rb, queued, b in manager.new_battle_stream(request.session_hash, text):
                if b is None:
                    note = f"Waiting for the model: position {queued} in the queue…" if queued else "Generating both replies…"
                    yield [text, None, ra, rb, note, gr.update(visible=False)] + lock_all
                else:
                    yield [text, b.battle_id, b.reply_a, b.reply_b, "", gr.update(visible=False)] + [gr.update(interactive=True)] * len(buttons)
        except (ValueError, NotEnoughContenders, SchedulerBusy, AdapterError) as exc:
            raise gr.Error(str(exc))

    def make_vote(choice):
        def on_vote(bid, request: gr.Request):
            try:
                res = manager.vote(request.session_hash, bid, choice, _client_id(request))
            except VoteRefused as exc:
                return [bid, f"⚠️ {inert(exc.message)}", gr.update(visible=True)] + lock_all
            note = " This vote is flagged (a reply reveals its model) and left out of the leaderboard." if res.excluded else ""
            text = (f"You voted **{VOTES[choice]}**. A was **{inert(res.contender_a)}**, B was **{inert(res.contender_b)}**.{note}")
            return [None, text, gr.update(visible=True)] + lock_all
        return on_vote

    def refresh_board(flagged):
        if store is None:
            return "No vote store.", [], None, None, ""
        board = leaderboard(store, include_flagged=bool(flagged))
        ex = board.get("excluded") or {}
        ex_txt = ", ".join(f"{k}: {v}" for k, v in ex.items()) or "none"
        txt = (f"**{board['total_votes']}** votes in the store · **{board['n_battles']}** on the leaderboard · "
               f"both-bad: {board.get('n_both_bad', 0)} · excluded: {ex_txt}")
        return txt, leaderboard_rows(board), rating_ci_figure(board), winrate_heatmap(board), verdicts_markdown(board)

    def on_export(kind, request: gr.Request):
        try:
            ctx.gate.require(request)
        except AdminRequired as exc:
            return None, f"⚠️ {exc}"
        from .export import export_votes

        out = Path(tempfile.mkdtemp(prefix="votes-")) / f"votes.{kind}"
        n = export_votes(store, out, include_excluded=True)
        return str(out), f"Exported {n} votes (Chatbot Arena battle format plus our fields)."

    board_outputs = [counts, table, ci_plot, heat, verdicts]
    new_tweet.click(on_new_tweet, None, [tweet])
    start_outputs = [tweet, battle_id, reply_a, reply_b, reveal, next_btn] + list(buttons.values())
    start.click(lambda: [gr.update(interactive=False)] * len(buttons), None, list(buttons.values())).then(
        on_start, [tweet], start_outputs, concurrency_limit=64, concurrency_id="model")  # the scheduler batches and bounds
    for k, btn in buttons.items():
        btn.click(make_vote(k), [battle_id], [battle_id, reveal, next_btn] + list(buttons.values())).then(
            refresh_board, [include_flagged], board_outputs)
    next_btn.click(lambda: ["", None, "", "", "", gr.update(visible=False)] + lock_all, None, start_outputs)
    lb_tab.select(refresh_board, [include_flagged], board_outputs)
    include_flagged.change(refresh_board, [include_flagged], board_outputs)
    export_btn.click(on_export, [fmt], [export_file, export_msg])
