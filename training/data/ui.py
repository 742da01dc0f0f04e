"""Data tab (admin): import → filter funnel → human review → export. Wiring only; the work is in service.py
and the pipeline modules. Every handler checks admin server-side; review state lives in SQLite (ReviewStore),
never in the browser, so a reload or a second admin resumes where the review stands."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import gradio as gr

from security import AdminRequired, inert
from security.escape import hide_temp_paths

from . import service as svc
from .collect_ui import build_collect_panel
from .export import export_dataset
from .filters import FilterConfig
from .messages import export_size_warning, import_headline, show_names

log = logging.getLogger(__name__)

FUNNEL_HEADERS = ["step", "pairs"]
EXPORT_HEADERS = ["name", "pairs", "train", "eval", "edited", "from review dataset", "created (UTC)", "path"]

KEYS_HTML = (
    '<div class="review-keys-help" style="font-size:13px;opacity:.85">Keyboard (when no text box has focus): '
    "<kbd>k</kbd> keep · <kbd>d</kbd> discard · <kbd>e</kbd> edit (focus the reply box; "
    "<kbd>Ctrl</kbd>+<kbd>Enter</kbd> saves, "
    "<kbd>Esc</kbd> leaves it) · <kbd>j</kbd> or <kbd>→</kbd> next · <kbd>l</kbd> or <kbd>←</kbd> previous</div>"
)

# One document-level listener, installed once per page, active only while the review panel is on screen.
KEYS_JS = r"""
if (!window.__replyArenaReviewKeys) {
  window.__replyArenaReviewKeys = true;
  document.addEventListener('keydown', function (ev) {
    const panel = document.getElementById('review-panel');
    if (!panel || panel.offsetParent === null) return;
    const t = ev.target;
    const edit = document.querySelector('#review-edit textarea');
    const click = function (id) { const b = document.getElementById(id); if (b && !b.disabled) b.click(); };
    if (edit && t === edit) {
      if (ev.key === 'Escape') { edit.blur(); ev.preventDefault(); }
      else if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); click('review-save-edit'); }
      return;
    }
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    const tag = (t && t.tagName ? t.tagName : '').toLowerCase();
    if (tag === 'input' || tag === 'textarea' || tag === 'select' || (t && t.isContentEditable)) return;
    if (t && t.getAttribute && t.getAttribute('role') === 'tab' && ev.key.startsWith('Arrow')) return;
    let handled = true;
    switch (ev.key) {
      case 'k': case 'K': click('review-keep'); break;
      case 'd': case 'D': click('review-discard'); break;
      case 'e': case 'E':
        if (edit) { edit.focus(); edit.setSelectionRange(edit.value.length, edit.value.length); }
        break;
      case 'j': case 'J': case 'ArrowRight': click('review-next'); break;
      case 'l': case 'L': case 'ArrowLeft': click('review-prev'); break;
      default: handled = false;
    }
    if (handled) ev.preventDefault();
  });
}
"""


def _err(exc: BaseException, temp_dir: str = "") -> str:
    """One line for the tab; ``temp_dir`` is Gradio's upload folder (Settings.gradio_temp_dir), hidden like /tmp."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return f"⚠️ {inert(hide_temp_paths(str(msg), [temp_dir]).splitlines()[0][:600] if msg else type(exc).__name__)}"


def _reviewer(request: gr.Request | None) -> str:
    return (getattr(request, "username", None) or "admin") if request is not None else "admin"


def build_data_tab(ctx) -> None:
    data_dir = ctx.settings.data_dir
    store = ctx.reviews
    emb_cache = ctx.settings.cache_dir / "embeddings"  # shared with the RAG index: the sample set is already embedded
    temp_dir = ctx.settings.gradio_temp_dir  # uploads land there; _err hides it
    d = FilterConfig()

    def denied(request) -> str | None:
        try:
            ctx.gate.require(request)
        except AdminRequired as exc:
            return f"⚠️ {inert(str(exc))}"
        return None

    with gr.Tab("Data (admin)", id="data") as tab:
        gr.Markdown(
            "Import X/Twitter exports, filter them through the funnel, review the survivors one by one, "
            "and export a training dataset. Admins only."
        )
        admin_msg = gr.Markdown("", elem_id="data-admin-msg")
        collect_panel = build_collect_panel(ctx, denied)  # X API / Apify → <data_dir>/collect/*.jsonl

        # ---------------------------------------------------------------- import
        with gr.Accordion("1 · Import and filter", open=True, elem_id="data-import-panel"):
            with gr.Row():
                with gr.Column(scale=3):
                    files = gr.File(
                        label="Export files (X API v2 / v1.1 JSON(L), Apify JSON, pairs JSONL, CSV; .gz ok)",
                        file_count="multiple",
                        type="filepath",
                        elem_id="data-files",
                    )
                    server_path = gr.Textbox(
                        label="…or server path(s) for big files (one per line)",
                        lines=1,
                        placeholder="/data/exports/replies.jsonl.gz",
                        elem_id="data-server-path",
                    )
                    collect_panel.path.change(
                        None, [collect_panel.path], [server_path], js="(p) => p"
                    )  # browser-side copy
                    mapping = gr.Textbox(
                        label="Column mapping for generic CSV/JSONL (optional JSON: our field → your column)",
                        lines=2,
                        placeholder='{"tweet": "parent_text", "reply": "text", "likes": "like_count"}',
                        elem_id="data-mapping",
                    )
                with gr.Column(scale=2):
                    ds_name = gr.Textbox(
                        label="Review dataset name",
                        placeholder="empty = the file's name",
                        elem_id="data-dataset-name",
                        info="letters, digits, '.', '_' or '-'",
                    )
                    replace = gr.Checkbox(
                        label="Replace existing dataset (its review decisions are lost)",
                        value=False,
                        elem_id="data-replace",
                    )
                    run_btn = gr.Button("Import, filter and dedup", variant="primary", elem_id="data-import")
            with gr.Accordion("Filter settings (empty number = no bound)", open=False):
                with gr.Row():
                    min_chars = gr.Number(
                        value=d.min_reply_chars, precision=0, label="min reply chars", elem_id="data-min-chars"
                    )
                    max_chars = gr.Number(
                        value=d.max_reply_chars, precision=0, label="max reply chars", elem_id="data-max-chars"
                    )
                    min_f = gr.Number(
                        value=d.min_author_followers,
                        precision=0,
                        label="min author followers",
                        elem_id="data-min-followers",
                    )
                    max_f = gr.Number(
                        value=d.max_author_followers,
                        precision=0,
                        label="max author followers",
                        elem_id="data-max-followers",
                    )
                with gr.Row():
                    min_delay = gr.Number(
                        value=d.min_time_diff_seconds,
                        precision=0,
                        label="min seconds after the tweet",
                        elem_id="data-min-delay",
                    )
                    min_likes = gr.Number(value=d.min_likes, precision=0, label="min likes", elem_id="data-min-likes")
                    langs = gr.Textbox(
                        value=",".join(d.languages or ()),
                        label="languages (comma list; empty = any)",
                        elem_id="data-languages",
                    )
                with gr.Row():
                    excl_urls = gr.Checkbox(value=d.exclude_urls, label="drop replies with links")
                    excl_media = gr.Checkbox(value=d.exclude_media, label="drop replies with media")
                    dedup_exact = gr.Checkbox(value=d.dedup_exact, label="drop exact duplicates")
                    guess_lang = gr.Checkbox(value=d.guess_missing_language, label="guess missing language")
                with gr.Row():
                    semantic_on = gr.Checkbox(
                        value=True, label="semantic dedup (MiniLM embeddings)", elem_id="data-semantic"
                    )
                    threshold = gr.Slider(
                        0.5,
                        1.0,
                        value=0.85,
                        step=0.01,
                        label="near-duplicate cosine threshold",
                        elem_id="data-threshold",
                    )
            import_status = gr.Markdown("", elem_id="data-import-status")
            fmt_md = gr.Markdown("", elem_id="data-format")
            with gr.Row():
                funnel_plot = gr.Plot(label="Filter funnel", elem_id="data-funnel-plot")
                funnel_table = gr.Dataframe(
                    headers=FUNNEL_HEADERS, interactive=False, label="Funnel", elem_id="data-funnel-table"
                )
            report_md = gr.Markdown("", elem_id="data-import-report")

        # ---------------------------------------------------------------- review
        with gr.Accordion("2 · Review", open=True):
            with gr.Column(elem_id="review-panel"):
                with gr.Row():
                    dataset_dd = gr.Dropdown(
                        choices=[], value=None, label="Review dataset", scale=3, elem_id="review-dataset"
                    )
                    status_filter = gr.Radio(
                        list(svc.FILTER_CHOICES), value="pending", label="Show", scale=3, elem_id="review-filter"
                    )
                    refresh_btn = gr.Button("Refresh", size="sm", scale=1, elem_id="review-refresh")
                progress_bar = gr.HTML(svc.progress_html(None), js_on_load=None, elem_id="review-progress")
                position_md = gr.Markdown("", elem_id="review-position")
                cur = gr.State(None)  # index of the pair on screen in this browser; decisions live in SQLite
                with gr.Row():
                    with gr.Column(scale=3):
                        tweet_tb = gr.Textbox(label="Tweet", lines=3, interactive=False, elem_id="review-tweet")
                        reply_tb = gr.Textbox(
                            label="Reply (original)", lines=3, interactive=False, elem_id="review-reply"
                        )
                        stats_md = gr.Markdown("", elem_id="review-stats")
                        edit_tb = gr.Textbox(
                            label="Reply to train on (edit here, then Save edit)",
                            lines=3,
                            max_lines=8,
                            elem_id="review-edit",
                        )
                    with gr.Column(scale=2):
                        gr.Markdown("**Why it passed the filters**")
                        why_md = gr.Markdown("", elem_id="review-why")
                with gr.Row():
                    prev_btn = gr.Button("← Prev (l)", elem_id="review-prev")
                    keep_btn = gr.Button("Keep (k)", variant="primary", elem_id="review-keep")
                    discard_btn = gr.Button("Discard (d)", variant="stop", elem_id="review-discard")
                    save_btn = gr.Button("Save edit (e)", elem_id="review-save-edit")
                    reset_btn = gr.Button("Undo → pending", elem_id="review-reset")
                    next_btn = gr.Button("Next (j) →", elem_id="review-next")
                review_msg = gr.Markdown("", elem_id="review-status")
                gr.HTML(KEYS_HTML, js_on_load=KEYS_JS, elem_id="review-keys")
                with gr.Accordion("Review guidelines", open=False, elem_id="review-guidelines"):
                    gr.Markdown(svc.GUIDELINES)

        # ---------------------------------------------------------------- export
        with gr.Accordion("3 · Export", open=True):
            gr.Markdown(
                "Exports the **kept and edited** pairs of the review dataset selected above (edits replace the "
                "original "
                "text) to `datasets/<name>/` under the data dir: train/eval split grouped by tweet, JSONL, a "
                "`datasets` folder and a dataset card. The Training tab lists these."
            )
            with gr.Row():
                export_name = gr.Textbox(
                    label="Export name", placeholder="empty = the review dataset's name", elem_id="export-name", scale=2
                )
                eval_frac = gr.Slider(0.0, 0.5, value=0.1, step=0.05, label="eval fraction", scale=2)
                seed = gr.Number(value=42, precision=0, label="seed", scale=1)
            with gr.Row():
                include_pending = gr.Checkbox(value=False, label="also export pairs nobody reviewed")
                overwrite = gr.Checkbox(
                    value=False, label="overwrite an export with the same name", elem_id="export-overwrite"
                )
                export_btn = gr.Button("Export", variant="primary", elem_id="export-go")
            export_status = gr.Markdown("", elem_id="export-status")
            export_file = gr.File(
                label="Download the export (zip)", interactive=False, visible=False, elem_id="export-download"
            )
            with gr.Accordion("Dataset card", open=False, elem_id="export-card-panel"):
                card_md = gr.Markdown("", elem_id="export-card")
                hist = gr.Gallery(label="Histograms", columns=2, height=260, elem_id="export-hists")
            with gr.Row():
                gr.Markdown("**Exported datasets**")
                exports_refresh = gr.Button("Refresh list", size="sm", elem_id="export-refresh")
            exports_df = gr.Dataframe(headers=EXPORT_HEADERS, interactive=False, elem_id="export-list")

    # ---- handlers ----------------------------------------------------------------------------------------------
    view_outputs = [cur, progress_bar, position_md, tweet_tb, reply_tb, stats_md, why_md, edit_tb, review_msg]
    keep_view = [gr.update()] * (len(view_outputs) - 1)

    def render(v: svc.ReviewView, msg: str = "") -> list:
        it = v.item
        if it is None:
            return [None, svc.progress_html(v.progress), v.position_markdown(), "", "", "", "", "", msg]
        why = "\n".join(f"- ✓ {line}" for line in svc.why_passed(it.pair, v.meta))
        return [
            it.index,
            svc.progress_html(v.progress),
            v.position_markdown(),
            it.pair.tweet,
            it.original_reply,
            svc.pair_stats_markdown(it.pair),
            why,
            it.reply,
            msg,
        ]

    def dataset_choices() -> list[tuple[str, str]]:
        return [(f"{x['name']} — {x['reviewed']}/{x['total']} reviewed", x["name"]) for x in store.datasets()]

    def summary(dataset) -> list:
        """How the selected dataset was made (format, funnel), from the store: shown again after a reload."""
        line, funnel = svc.dataset_summary(store, dataset)
        if funnel is None:
            return [line, None, []]
        return [line, funnel.plot(), svc.funnel_rows(funnel)]

    def on_open(current, flt, request: gr.Request):
        """Tab opened / Refresh: dataset list, the review where it stands, exports. Nothing for non-admins."""
        no = denied(request)
        if no:
            return (
                [no, gr.update(choices=[], value=None)]
                + render(svc.ReviewView(None, "pending", None, 0, 0, None), no)
                + [[], "", None, []]
            )
        try:
            choices = dataset_choices()
            names = [v for _, v in choices]
            chosen = current if current in names else (names[0] if names else None)
            view = render(svc.review_view(store, chosen, flt or "pending"))
            rows = svc.export_rows(data_dir)
            info = summary(chosen)
        except Exception as exc:  # a broken store must not show a traceback
            log.exception("data tab refresh failed")
            msg = _err(exc, temp_dir)
            return [msg, gr.update()] + keep_view + [msg, gr.update()] + [gr.update()] * 3
        return ["", gr.update(choices=choices, value=chosen)] + view + [rows] + info

    open_outputs = [admin_msg, dataset_dd] + view_outputs + [exports_df, fmt_md, funnel_plot, funnel_table]
    tab.select(on_open, [dataset_dd, status_filter], open_outputs)
    refresh_btn.click(on_open, [dataset_dd, status_filter], open_outputs)

    def on_import(
        up,
        paths,
        mapping_text,
        name,
        repl,
        mn_c,
        mx_c,
        urls,
        mn_f,
        mx_f,
        delay,
        media,
        likes,
        exact,
        lang_text,
        guess,
        sem_on,
        thr,
        request: gr.Request,
        progress=gr.Progress(),
    ):
        nothing = [gr.update()] * 5
        cleared = ["", gr.update(visible=False, value=None), ""]  # a new import makes the last export's lines stale
        no = denied(request)
        if no:
            return [no] + nothing + [gr.update()] * 3
        sources: list = []
        try:
            sources = svc.resolve_sources(up, paths)
            cfg = svc.make_filter_config(
                min_reply_chars=mn_c,
                max_reply_chars=mx_c,
                exclude_urls=urls,
                min_author_followers=mn_f,
                max_author_followers=mx_f,
                min_time_diff_seconds=delay,
                exclude_media=media,
                min_likes=likes,
                dedup_exact=exact,
                languages=lang_text,
                guess_missing_language=guess,
            )
            col_map = svc.parse_mapping(mapping_text)
            dataset = (name or "").strip() or svc.default_dataset_name(sources)
            out = svc.import_to_review(
                sources,
                data_dir,
                dataset,
                mapping=col_map,
                filter_config=cfg,
                semantic_threshold=float(thr) if sem_on else None,
                replace=bool(repl),
                cache_dir=emb_cache,
                store=store,
                progress=lambda f, desc: progress(f, desc=desc),
            )
        except (ValueError, KeyError, OSError) as exc:
            msg = show_names(_err(exc, temp_dir), sources + list(up or []))
            return [msg] + ["", None, [], ""] + [gr.update()] + cleared
        except Exception as exc:
            log.exception("import failed")
            return (
                [f"⚠️ Import failed ({type(exc).__name__}); nothing was stored. See the server log."] + nothing + cleared
            )
        fmt = "**Detected format:** " + "; ".join(inert(f) for f in out.formats)
        choices = dataset_choices()
        return [
            show_names(import_headline(out.funnel, out.summary()), sources),
            fmt,
            out.funnel.plot(),
            svc.funnel_rows(out.funnel),
            show_names(svc.import_report_markdown(out), sources),
            gr.update(choices=choices, value=out.dataset),
        ] + cleared

    def on_load_review(dataset, flt, request: gr.Request):
        no = denied(request)
        if no:
            return keep_view + [no]
        try:
            return render(svc.review_view(store, dataset, flt or "pending"))
        except (ValueError, KeyError) as exc:
            return keep_view + [_err(exc, temp_dir)]

    run_btn.click(
        on_import,
        [
            files,
            server_path,
            mapping,
            ds_name,
            replace,
            min_chars,
            max_chars,
            excl_urls,
            min_f,
            max_f,
            min_delay,
            excl_media,
            min_likes,
            dedup_exact,
            langs,
            guess_lang,
            semantic_on,
            threshold,
        ],
        [import_status, fmt_md, funnel_plot, funnel_table, report_md, dataset_dd, export_status, export_file, card_md],
        concurrency_limit=1,
        concurrency_id="data-import",
    ).then(on_load_review, [dataset_dd, status_filter], view_outputs)

    def on_summary(dataset, request: gr.Request):
        if denied(request):
            return [gr.update()] * 3
        try:
            return summary(dataset)
        except (ValueError, KeyError) as exc:
            return [_err(exc, temp_dir), None, []]

    dataset_dd.input(on_load_review, [dataset_dd, status_filter], view_outputs).then(
        on_summary, [dataset_dd], [fmt_md, funnel_plot, funnel_table]
    )
    status_filter.input(on_load_review, [dataset_dd, status_filter], view_outputs)

    def make_nav(direction: int):
        def on_nav(dataset, flt, idx, request: gr.Request):
            no = denied(request)
            if no:
                return keep_view + [no]
            try:
                return render(svc.step(store, dataset, flt or "pending", idx, direction))
            except (ValueError, KeyError, IndexError) as exc:
                return keep_view + [_err(exc, temp_dir)]

        return on_nav

    prev_btn.click(make_nav(-1), [dataset_dd, status_filter, cur], view_outputs)
    next_btn.click(make_nav(+1), [dataset_dd, status_filter, cur], view_outputs)

    def make_decide(decision: str):
        verb = {"keep": "Kept", "discard": "Discarded", "pending": "Back to pending:"}[decision]

        def on_decide(dataset, flt, idx, request: gr.Request):
            no = denied(request)
            if no:
                return keep_view + [no]
            try:
                item = svc.record_decision(store, dataset, idx, decision, reviewer=_reviewer(request))
                flt = flt or "pending"
                view = (
                    svc.advance_after_decision(store, dataset, flt, item.index)
                    if decision != "pending"
                    else svc.review_view(store, dataset, flt, item.index)
                )
            except (ValueError, KeyError, IndexError) as exc:
                return keep_view + [_err(exc, temp_dir)]
            return render(view, f"{verb} {inert(item.pair_id)}.")

        return on_decide

    keep_btn.click(make_decide("keep"), [dataset_dd, status_filter, cur], view_outputs)
    discard_btn.click(make_decide("discard"), [dataset_dd, status_filter, cur], view_outputs)
    reset_btn.click(make_decide("pending"), [dataset_dd, status_filter, cur], view_outputs)

    def on_save_edit(dataset, flt, idx, text, request: gr.Request):
        no = denied(request)
        if no:
            return keep_view + [no]
        try:
            item = svc.record_decision(store, dataset, idx, "edit", edited_text=text, reviewer=_reviewer(request))
        except (ValueError, KeyError, IndexError) as exc:
            return keep_view + [_err(exc, temp_dir)]
        # Stay on the pair (even when the filter no longer matches it) so the saved text is visible.
        v = svc.review_view(store, dataset, "all", item.index)
        v.status_filter = flt or "pending"
        msg = (
            f"Saved the edit of {inert(item.pair_id)} (the original is kept). Press j / Next to go on."
            if item.status == "edited"
            else f"The text equals the original, so {inert(item.pair_id)} is marked kept."
        )
        out = render(v, msg)
        out[2] = f"Pair {item.index + 1} of {v.count} (all) · id {inert(item.pair_id)} · status **{item.status}**"
        return out

    save_btn.click(on_save_edit, [dataset_dd, status_filter, cur, edit_tb], view_outputs)

    def on_export(dataset, name, frac, sd, pending, over, request: gr.Request):
        no = denied(request)
        if no:
            return no, gr.update(), gr.update(), gr.update(), gr.update()
        if not dataset:
            return "⚠️ Pick a review dataset above first.", gr.update(), gr.update(), gr.update(), gr.update()
        try:
            info = export_dataset(
                data_dir,
                dataset,
                (name or "").strip() or None,
                store=store,
                eval_fraction=float(frac),
                seed=int(sd if sd is not None else 42),
                include_pending=bool(pending),
                overwrite=bool(over),
            )
        except (ValueError, KeyError, OSError) as exc:
            return _err(exc, temp_dir), gr.update(), gr.update(), gr.update(), gr.update(visible=False, value=None)
        except Exception as exc:
            log.exception("export failed")
            return (
                f"⚠️ Export failed ({type(exc).__name__}). See the server log.",
                gr.update(),
                gr.update(),
                gr.update(),
                gr.update(visible=False, value=None),
            )
        warn = export_size_warning(info.n_total, info.n_train, info.n_eval)
        msg = (
            f"{'⚠️' if warn else '✅'} Exported **{inert(info.name)}**: {info.n_total} pairs ({info.n_train} train / "
            f"{info.n_eval} eval, {info.n_edited} edited) to {inert(info.path)}" + (f"\n\n{warn}" if warn else "")
        )
        imgs = []
        try:
            from PIL import Image

            for fn, cap in (("length_hist.png", "reply length"), ("engagement_hist.png", "engagement")):
                with Image.open(f"{info.path}/{fn}") as im:
                    imgs.append((im.copy(), cap))
        except OSError:
            pass
        archive = shutil.make_archive(str(Path(tempfile.mkdtemp(prefix="export-")) / info.name), "zip", info.path)
        return (
            msg,
            svc.card_markdown(info.path),
            imgs,
            svc.export_rows(data_dir),
            gr.update(visible=True, value=archive),
        )

    export_btn.click(
        on_export,
        [dataset_dd, export_name, eval_frac, seed, include_pending, overwrite],
        [export_status, card_md, hist, exports_df, export_file],
        concurrency_limit=1,
        concurrency_id="data-export",
    )

    def on_exports_refresh(request: gr.Request):
        no = denied(request)
        if no:
            return no, gr.update()
        return "", svc.export_rows(data_dir)

    exports_refresh.click(on_exports_refresh, None, [export_status, exports_df])
