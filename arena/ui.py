"""Arena and Leaderboard tabs. Wiring only: battles.py validates, store.py persists, evaluation/ratings.py computes."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from common.text import validate_tweet
from evaluation.gates import VERDICT_HELP
from security import AdminRequired, RateLimited, inert

from .battles import NotEnoughContenders, VoteRefused, random_heldout_tweet
from .export import export_votes
from .leaderboard import LEADERBOARD_COLUMNS, leaderboard, leaderboard_rows, lineage_markdown, verdicts_markdown
from .plots import rating_ci_figure, winrate_heatmap

if TYPE_CHECKING:  # type-only: arena never imports the app layer at run time
    from context import AppContext

VOTES = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}


def build_arena_tab(ctx: AppContext) -> None:
    """Battle → vote → reveal. The vote is stored by ctx.battles (arena/battles.py → arena/store.py)."""
    manager = ctx.battles
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

    # ---- handlers --------------------------------------------------------------------------------------------
    lock_all = [gr.update(interactive=False)] * len(buttons)

    def on_new_tweet():
        return random_heldout_tweet(ctx.settings.heldout)

    def on_start(text, request: gr.Request):
        if manager is None:
            raise gr.Error(ctx.model_banner(), print_exception=False)
        if not (text or "").strip():
            text = random_heldout_tweet(ctx.settings.heldout)
        try:
            text = validate_tweet(text)  # bad input is answered before it costs the visitor an allowance
            if ctx.limits is not None:  # per address, before any model time is spent
                ctx.limits.battle.hit([ctx.client_address(request)])
            b = manager.new_battle(request.session_hash, text)
        except (ValueError, NotEnoughContenders, RateLimited) as exc:
            raise gr.Error(str(exc), print_exception=False)
        return [text, b.battle_id, b.reply_a, b.reply_b, "", gr.update(visible=False)] + [gr.update(interactive=True)] * len(buttons)

    def make_vote(choice):
        def on_vote(bid, request: gr.Request):
            try:
                # Who is voting, for rate limits: only a salted hash of the address is stored.
                res = manager.vote(request.session_hash, bid, choice, ctx.client_address(request))
            except VoteRefused as exc:
                return [bid, f"⚠️ {inert(exc.message)}", gr.update(visible=True)] + lock_all
            note = " This vote is flagged (a reply reveals its model) and left out of the leaderboard." if res.excluded else ""
            text = (f"You voted **{VOTES[choice]}**. A was **{inert(res.contender_a)}**, B was **{inert(res.contender_b)}**.{note}")
            return [None, text, gr.update(visible=True)] + lock_all
        return on_vote

    new_tweet.click(on_new_tweet, None, [tweet])
    start_outputs = [tweet, battle_id, reply_a, reply_b, reveal, next_btn] + list(buttons.values())
    start.click(lambda: [gr.update(interactive=False)] * len(buttons), None, list(buttons.values())).then(
        on_start, [tweet], start_outputs, concurrency_limit=1, concurrency_id="model")
    for k, btn in buttons.items():
        btn.click(make_vote(k), [battle_id], [battle_id, reveal, next_btn] + list(buttons.values()))
    next_btn.click(lambda: ["", None, "", "", "", gr.update(visible=False)] + lock_all, None, start_outputs)


def build_leaderboard_tab(ctx: AppContext) -> None:
    """Ratings straight from the vote store on every view (arena/leaderboard.py → evaluation/ratings.py)."""
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

    def refresh_board(flagged):
        board = leaderboard(ctx.votes, include_flagged=bool(flagged))
        ex = board.get("excluded") or {}
        ex_txt = ", ".join(f"{k}: {v}" for k, v in ex.items()) or "none"
        txt = (f"**{board['total_votes']}** votes in the store · **{board['n_battles']}** on the leaderboard · "
               f"both-bad: {board.get('n_both_bad', 0)} · excluded: {ex_txt}")
        lineage = lineage_markdown(ctx.votes, ctx.settings.adapters_dir)
        return txt, leaderboard_rows(board), rating_ci_figure(board), winrate_heatmap(board), verdicts_markdown(board) + lineage

    def on_export(kind, request: gr.Request):
        try:
            ctx.gate.require(request)
        except AdminRequired as exc:
            return None, f"⚠️ {exc}"
        out = Path(tempfile.mkdtemp(prefix="votes-")) / f"votes.{kind}"
        n = export_votes(ctx.votes, out, include_excluded=True)
        return str(out), f"Exported {n} votes (Chatbot Arena battle format plus our fields)."

    board_outputs = [counts, table, ci_plot, heat, verdicts]
    lb_tab.select(refresh_board, [include_flagged], board_outputs)
    include_flagged.change(refresh_board, [include_flagged], board_outputs)
    export_btn.click(on_export, [fmt], [export_file, export_msg])
