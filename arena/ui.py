"""Arena and Leaderboard tabs. Wiring only: battles.py validates, store.py persists, evaluation/ratings.py computes,
board_view.py words the leaderboard."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from common.text import validate_tweet
from evaluation.gates import VERDICT_HELP
from generation import AdapterError
from generation.scheduler import SchedulerBusy
from generation.variants import friendly_name
from security import AdminRequired, RateLimited, inert

from .battles import NotEnoughContenders, VoteRefused, random_heldout_tweet
from .board_view import (
    LEADERBOARD_COLUMNS,
    PAIR_COLUMNS,
    PRELIMINARY_VOTES,
    comparisons_markdown,
    leaderboard_rows,
    pair_rows,
)
from .export import export_votes
from .leaderboard import leaderboard, lineage_markdown, verdicts_markdown
from .plots import rating_ci_figure, winrate_heatmap

if TYPE_CHECKING:  # type-only: arena never imports the app layer at run time
    from context import AppContext

VOTES = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}
KEYS = {"a": "A", "b": "B", "tie": "T", "both_bad": "X"}  # keyboard shortcut per vote; N = next battle
RETRYABLE = {"rate_limited"}  # refusals after which the same battle can still be voted on later

# Installed once per page (tab select / battle start): a key press clicks the matching enabled button,
# unless the visitor is typing in a field or holds a modifier.
KEYS_JS = """() => {
  if (window.__arenaKeys) return;
  window.__arenaKeys = true;
  const map = {a: 'vote-a', b: 'vote-b', t: 'vote-tie', x: 'vote-both_bad', n: 'arena-next'};
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const t = e.target; const tag = (t && t.tagName || '').toLowerCase();
    if (tag === 'input' || tag === 'textarea' || (t && t.isContentEditable)) return;
    const id = map[(e.key || '').toLowerCase()];
    const btn = id && document.getElementById(id);
    if (!btn || btn.disabled || btn.offsetParent === null) return;
    const arena = document.getElementById('arena-a');
    if (!arena || arena.offsetParent === null) return;  // only while the Arena tab is shown
    e.preventDefault(); btn.click();
  });
}"""


def build_arena_tab(ctx: AppContext) -> None:
    """Battle → vote → reveal. The vote is stored by ctx.battles (arena/battles.py → arena/store.py)."""
    manager = ctx.battles
    with gr.Tab("Arena", id="arena") as arena_tab:
        gr.Markdown(
            "Two anonymous models reply to the same tweet. Vote for the better reply; the names are revealed after "
            "your vote. "
            "Keys: **A** / **B** = that reply is better, **T** = tie, **X** = both bad, **N** = next battle."
        )
        battle_id = gr.State(None)
        with gr.Row():
            tweet = gr.Textbox(
                label="Tweet",
                lines=2,
                scale=4,
                elem_id="arena-tweet",
                placeholder="Type a tweet or draw one from the held-out pool",
            )
            with gr.Column(scale=1):
                new_tweet = gr.Button("New tweet", elem_id="arena-new-tweet")
                start = gr.Button(
                    "Start battle", variant="primary", elem_id="arena-start", interactive=manager is not None
                )
        with gr.Row():
            with gr.Column():
                reply_a = gr.Textbox(label="Reply A", lines=4, interactive=False, elem_id="arena-a")
                name_a = gr.Markdown("", elem_id="arena-name-a")
            with gr.Column():
                reply_b = gr.Textbox(label="Reply B", lines=4, interactive=False, elem_id="arena-b")
                name_b = gr.Markdown("", elem_id="arena-name-b")
        with gr.Row():
            buttons = {
                k: gr.Button(f"{label} ({KEYS[k]})", interactive=False, elem_id=f"vote-{k}")
                for k, label in VOTES.items()
            }
        reveal = gr.Markdown("", elem_id="arena-reveal")
        next_btn = gr.Button("Next battle (N)", variant="primary", visible=False, elem_id="arena-next")

    # ---- handlers --------------------------------------------------------------------------------------------
    vote_buttons = list(buttons.values())
    lock_all = [gr.update(interactive=False)] * len(buttons)
    open_all = [gr.update(interactive=True)] * len(buttons)

    def on_new_tweet():
        return random_heldout_tweet(ctx.settings.heldout)

    def on_start(text, request: gr.Request):
        if manager is None:
            raise gr.Error(ctx.model_banner(), print_exception=False)
        address = ctx.client_address(request)
        try:
            text = validate_tweet(text) if (text or "").strip() else ""  # bad input costs the visitor no allowance
            if ctx.limits is not None:  # per address, before any model time is spent
                ctx.limits.battle.hit([address])
            if not text and ctx.pool is not None:
                # An empty box: a held-out tweet with pre-generated replies, served without the GPU.
                ctx.pool.refresh()  # picks up a newly trained adapter
                b = manager.new_pool_battle(request.session_hash, [request.session_hash, "client:" + address], ctx.pool)
                if b is not None:
                    yield [b.tweet, b.battle_id, b.reply_a, b.reply_b, "", "", "", gr.update(visible=False)] + open_all
                    return
            if not text:
                text = random_heldout_tweet(ctx.settings.heldout)
            # Both replies come from one batch and stream into their boxes as they grow; names stay on the server.
            for ra, rb, queued, b in manager.new_battle_stream(request.session_hash, text):
                if b is None:
                    note = (
                        f"Waiting for the model: position {queued} in the queue…"
                        if queued
                        else "Generating both replies…"
                    )
                    yield [text, None, ra, rb, note, "", "", gr.update(visible=False)] + lock_all
                else:
                    yield [text, b.battle_id, b.reply_a, b.reply_b, "", "", "", gr.update(visible=False)] + open_all
        except (ValueError, NotEnoughContenders, RateLimited, SchedulerBusy, AdapterError) as exc:
            raise gr.Error(str(exc), print_exception=False)

    def make_vote(choice):
        def on_vote(bid, request: gr.Request):
            try:
                # Who is voting, for rate limits: only a salted hash of the address is stored.
                res = manager.vote(request.session_hash, bid, choice, ctx.client_address(request))
            except VoteRefused as exc:
                if exc.reason in RETRYABLE:  # keep the battle: the buttons come back so the visitor can vote later
                    return [
                        bid,
                        f"⚠️ {inert(exc.message)} Your battle is kept: vote again in a moment.",
                        gr.update(),
                        gr.update(),
                        gr.update(visible=False),
                    ] + open_all
                return [bid, f"⚠️ {inert(exc.message)}", gr.update(), gr.update(), gr.update(visible=True)] + lock_all
            note = (
                " This vote is flagged (a reply reveals its model) and left out of the leaderboard."
                if res.excluded
                else ""
            )
            na, nb = inert(friendly_name(res.contender_a)), inert(friendly_name(res.contender_b))
            text = f"You voted **{VOTES[choice]}**. A was **{na}**, B was **{nb}**.{note}"
            return [None, text, f"**{na}**", f"**{nb}**", gr.update(visible=True)] + lock_all

        return on_vote

    new_tweet.click(on_new_tweet, None, [tweet])
    start_outputs = [tweet, battle_id, reply_a, reply_b, reveal, name_a, name_b, next_btn] + vote_buttons
    arena_tab.select(None, None, None, js=KEYS_JS)
    start.click(None, None, None, js=KEYS_JS)
    start.click(lambda: lock_all, None, vote_buttons).then(
        on_start, [tweet], start_outputs, concurrency_limit=64, concurrency_id="model"
    )  # the scheduler batches and bounds
    for k, btn in buttons.items():
        btn.click(make_vote(k), [battle_id], [battle_id, reveal, name_a, name_b, next_btn] + vote_buttons)
    # One button to go on: clear, draw a held-out tweet and start the next battle at once.
    next_btn.click(
        lambda: (
            ["", None, "", "", "Drawing a tweet and generating both replies…", "", "", gr.update(visible=False)]
            + lock_all
        ),
        None,
        start_outputs,
    ).then(
        on_start, [tweet], start_outputs, concurrency_limit=64, concurrency_id="model"
    )  # the scheduler batches and bounds


def build_leaderboard_tab(ctx: AppContext) -> None:
    """Ratings straight from the vote store on every view (arena/leaderboard.py → evaluation/ratings.py)."""
    with gr.Tab("Leaderboard", id="leaderboard") as lb_tab:
        include_flagged = gr.Checkbox(label="Include votes flagged as revealing the contender", value=False)
        counts = gr.Markdown("", elem_id="lb-counts")
        table = gr.Dataframe(headers=LEADERBOARD_COLUMNS, interactive=False, elem_id="lb-table")
        gr.Markdown(
            f"Rank = 1 + the number of contenders statistically better (their 95% interval lies wholly above), as on "
            f"Chatbot Arena: contenders whose intervals overlap share a rank. *(preliminary)* = fewer than "
            f"{PRELIMINARY_VOTES} votes so far."
        )
        gr.Markdown("### What the votes say so far")
        comparisons = gr.Markdown("", elem_id="lb-comparisons")
        with gr.Accordion("Pairwise table (win rate with 95% CI, sign test, Holm-adjusted p)", open=False):
            pairs = gr.Dataframe(headers=PAIR_COLUMNS, interactive=False, elem_id="lb-pairs")
            gr.Markdown(
                "Win rate = share of decisive votes (ties left out) won by the first-named. *Votes still needed* = "
                "more decisive votes for an 80% chance of a significant result if the difference seen so far is real."
            )
        with gr.Row():
            ci_plot = gr.Plot(label="Ratings with 95% CIs")
            heat = gr.Plot(label="Pairwise win rates")
        verdicts = gr.Markdown("", elem_id="lb-verdicts")
        with gr.Accordion("How the verdicts are decided", open=False):
            gr.Markdown(VERDICT_HELP, elem_id="lb-help")
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
        txt = (
            f"**{board['total_votes']}** votes in the store · **{board['n_battles']}** on the leaderboard · "
            f"both-bad: {board.get('n_both_bad', 0)} · excluded: {ex_txt}"
        )
        lineage = lineage_markdown(ctx.votes, ctx.settings.adapters_dir)
        return (
            txt,
            leaderboard_rows(board),
            rating_ci_figure(board),
            winrate_heatmap(board),
            verdicts_markdown(board) + lineage,
            comparisons_markdown(board, escape=inert),
            pair_rows(board),
        )

    def on_export(kind, request: gr.Request):
        try:
            ctx.gate.require(request)
        except AdminRequired as exc:
            return None, f"⚠️ {exc}"
        out = Path(tempfile.mkdtemp(prefix="votes-")) / f"votes.{kind}"
        n = export_votes(ctx.votes, out, include_excluded=True)
        return str(out), f"Exported {n} votes (Chatbot Arena battle format plus our fields)."

    board_outputs = [counts, table, ci_plot, heat, verdicts, comparisons, pairs]
    lb_tab.select(refresh_board, [include_flagged], board_outputs)
    include_flagged.change(refresh_board, [include_flagged], board_outputs)
    export_btn.click(on_export, [fmt], [export_file, export_msg])
