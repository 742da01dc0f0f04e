"""Evaluate tab (admin): batch replies on held-out tweets, LLM judge with position swap, gates, report, ledger, publish.

Wiring only: batch.py generates, judge.py judges, metrics.py / gates.py compute, report.py writes, ledger.py logs,
publish.py pushes. Every handler checks the admin gate on the server first.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from generation.errors import ModelLoadError
from generation.variants import adapter_name, is_lora
from security import AdminRequired, inert
from security.escape import hide_temp_paths

from .estimate import estimate, local_judge_problem
from .export_model import ExportError, export_model
from .gates import COMPOSITE_HELP, PHASE0_HELP, PHASE4_HELP, DecisionRule, Weights
from .judge import DEFAULT_MODEL, LOCAL_LABEL_NOTE, NO_KEY_MESSAGE, JudgeError, JudgeUnavailable, make_judge
from .ledger import LEDGER_COLUMNS, Ledger
from .report import PAIR_COLUMNS

if TYPE_CHECKING:  # type-only: evaluation never imports the app layer at run time
    from context import AppContext

log = logging.getLogger(__name__)

SOURCES = {"heldout": "Held-out set (assets)", "split": "Exported eval split", "upload": "Upload JSONL / CSV"}


def _key_status(api_key: str | None) -> str:
    if api_key:
        return "Claude judge: `ANTHROPIC_API_KEY` is set."
    return f"⚠️ {NO_KEY_MESSAGE} The local judge works offline ({LOCAL_LABEL_NOTE})."


def resolve_tweets(ctx, source: str, split_path: str | None, upload) -> tuple[Path, str]:
    """(file, label) for the chosen tweets source; ValueError with a sentence for the UI."""
    if source == "split":
        if not split_path:
            raise ValueError("No exported eval split chosen; export a dataset in the Data tab first.")
        return Path(split_path), f"eval split {Path(split_path).parent.name}"
    if source == "upload":
        path = getattr(upload, "name", upload) if upload is not None else None
        if not path:
            raise ValueError("Upload a JSONL or CSV file with a `tweet` column first.")
        return Path(path), f"upload {Path(path).name}"
    return Path(ctx.settings.heldout), "held-out set (assets/heldout_tweets.jsonl)"


def run_for_tab(
    ctx,
    *,
    source: str,
    split_path: str | None,
    upload,
    adapters: list[str],
    include_rag: bool,
    thinking: bool,
    judge_kind: str,
    judge_model: str,
    limit,
    weights: tuple,
    min_votes,
    name: str,
    progress=None,
) -> dict:
    """Everything the Run button does after the admin check; raises ValueError / JudgeUnavailable / JudgeError."""
    from .batch import load_items
    from .run import EvalConfig, run_evaluation

    if ctx.engine is None:
        raise ValueError(ctx.model_banner())
    path, label = resolve_tweets(ctx, source, split_path, upload)
    lim = int(limit) if limit not in (None, "") and int(limit) > 0 else None
    items, warnings = load_items(path, lim)
    data_dir = Path(ctx.settings.data_dir)
    judge = make_judge(
        judge_kind,
        model=(judge_model or DEFAULT_MODEL).strip(),
        engine=ctx.engine,
        cache_dir=data_dir / "eval_cache",
        api_key=ctx.settings.anthropic_api_key,
    )
    w = Weights(*(float(x) for x in weights))
    cfg = EvalConfig(
        name=(name or "eval").strip() or "eval",
        adapters=[adapter_name(a) or a for a in adapters or []],
        include_rag=bool(include_rag),
        thinking=bool(thinking),
        judge=judge_kind,
        judge_model=judge.model,
        limit=lim,
        weights=w,
        rule=DecisionRule(min_votes=int(min_votes or DecisionRule().min_votes)),
        tweets_source=label,
    )
    return run_evaluation(
        ctx.engine,
        items,
        cfg,
        judge=judge,
        data_dir=data_dir,
        adapters_dir=ctx.settings.adapters_dir,
        data_info={"warnings": warnings},
        progress=progress,
        votes=list(ctx.votes.iter_votes()),
        wandb_project=ctx.settings.wandb_project,
        wandb_mode=ctx.settings.wandb_mode,
    )


def _copy_out(result: dict) -> dict[str, str]:
    """Copy the report files to a temp dir Gradio may serve (the data dir can be outside the app's folder)."""
    out = Path(tempfile.mkdtemp(prefix="eval-report-"))
    copied = {}
    for key, p in (result.get("files") or {}).items():
        src = Path(p)
        if src.is_file():
            dst = out / src.name
            shutil.copy2(src, dst)
            copied[key] = str(dst)
    return copied


def _t(text) -> str:
    """inert() for Markdown text nodes; quotes need no entity there (Gradio would show '&#x27;' literally)."""
    return inert(str(text)).replace("&\\#x27;", "'").replace("&quot;", '"')


def count_tweets(path: Path | str | None) -> int:
    """Rows in a tweets file (non-empty lines; a CSV's header does not count); 0 when unreadable."""
    if not path:
        return 0
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            n = sum(1 for line in f if line.strip())
    except OSError:
        return 0
    return max(0, n - 1) if str(path).lower().endswith(".csv") else n


def model_parameters(engine) -> int | None:
    try:
        return int(sum(p.numel() for p in engine.loaded.model.parameters()))
    except AttributeError:
        return None


def ledger_rows(data_dir) -> list[list]:
    led = Ledger(data_dir)
    try:
        return led.table()
    finally:
        led.close()


def verdict_markdown(result: dict) -> str:
    from .report import verdict_lines

    j = result["judge"]
    u = j["usage"]
    cost = f"${u['cost_usd']:.4f}" if u.get("cost_usd") is not None else "unknown"
    lines = [f"### Verdicts — {_t(result['name'])}"]
    if j.get("weaker"):
        lines.append(f"> ⚠️ {_t(j['note'])}")
    lines += [f"- **{_t(v)}**" for v in verdict_lines(result)]
    lines.append(
        f"\n{result['data']['n_items']} tweets · replies: {result['generation']['n_generated']} generated, "
        f"{result['generation']['n_cached']} cached · judge {_t(j['label'])}: {u['calls']} calls, {u['cached']} "
        "cached, "
        f"{u['retries']} retries, ~{cost} · {result.get('n_unparsed', 0)} unparsed answers · "
        f"report folder: {_t(result.get('report_dir', ''))}"
    )
    k = result["judge_vs_human"]
    if k.get("n"):
        lines.append(
            f"\nJudge vs humans: Cohen's kappa {k['kappa']:.2f} ({k['interpretation']}) on {k['n']} battles."
            if k.get("kappa") is not None
            else f"\nJudge vs humans: {k['n']} matched battles, kappa undefined."
        )
    return "\n".join(lines)


def build_evaluate_tab(ctx: AppContext) -> None:
    from .batch import exported_eval_splits
    from .report import metrics_table, pair_table, ranking_has_data, ranking_table, render_html

    engine = ctx.engine
    data_dir = Path(ctx.settings.data_dir)
    lora = [v for v in (engine.variants() if engine else []) if is_lora(v)]
    has_rag = bool(engine and "rag" in engine.variants())
    local_problem = local_judge_problem(model_parameters(engine), engine.loaded.name) if engine is not None else None
    device = str(getattr(getattr(engine, "loaded", None), "device", "cpu"))

    def denied(request) -> str | None:
        try:
            ctx.gate.require(request)
        except AdminRequired as exc:
            return f"⚠️ {_t(exc)}"
        return None

    def split_choices() -> list[tuple[str, str]]:
        return [(f"{p.parent.name} ({p.parent.parent.name})", str(p)) for p in exported_eval_splits(data_dir)]

    with gr.Tab("Evaluate (admin)", id="evaluate") as tab:
        gr.Markdown(
            "Batch replies on held-out tweets from base, RAG and your adapters; an LLM judge compares them "
            "(each pair twice, positions swapped) and scores them 1-10; significance tests, decision gates and a "
            "report. Replies and judge answers are cached, so re-runs are free. Admins only."
        )
        admin_msg = gr.Markdown("", elem_id="eval-admin-msg")
        with gr.Row():
            with gr.Column(scale=3):
                source = gr.Radio(
                    [(v, k) for k, v in SOURCES.items()], value="heldout", label="Tweets", elem_id="eval-source"
                )
                split_dd = gr.Dropdown(choices=[], label="Exported eval split (Data tab exports)", elem_id="eval-split")
                upload = gr.File(
                    label="JSONL / CSV with a `tweet` column (optional `reference_reply`)",
                    file_types=[".jsonl", ".csv", ".json"],
                    type="filepath",
                    elem_id="eval-upload",
                )
                limit = gr.Number(value=20, precision=0, label="Limit (tweets; 0 = all)", elem_id="eval-limit")
                name = gr.Textbox(value="eval", label="Evaluation name", elem_id="eval-name")
            with gr.Column(scale=3):
                adapters = gr.CheckboxGroup(
                    choices=lora, value=lora, label="Adapters (each vs base and vs RAG)", elem_id="eval-adapters"
                )
                refresh_adapters = gr.Button("Refresh adapter list", size="sm")
                include_rag = gr.Checkbox(
                    value=has_rag,
                    interactive=has_rag,
                    label="Include RAG" if has_rag else "Include RAG (no retrieval index loaded)",
                )
                thinking = gr.Checkbox(
                    value=False,
                    interactive=bool(engine and engine.supports_thinking),
                    label="Thinking mode on (Qwen3); off is the default for replies",
                )
                judge_kind = gr.Radio(
                    [("Claude (Anthropic API)", "anthropic"), ("Local model (weaker, offline)", "local")],
                    value="anthropic",
                    label="Judge",  # never env-dependent: the page is public
                    elem_id="eval-judge",
                )
                judge_model = gr.Textbox(value=DEFAULT_MODEL, label="Claude model id", elem_id="eval-judge-model")
                key_md = gr.Markdown("", elem_id="eval-key-status")  # filled for admins only (on_open)
            with gr.Column(scale=2):
                gr.Markdown("**Composite score weights**")
                w_eng = gr.Number(value=0.4, label="engagement (judge score)")
                w_win = gr.Number(value=0.3, label="judge win rate")
                w_loss = gr.Number(value=0.3, label="1 − eval loss")
                min_votes = gr.Number(
                    value=DecisionRule().min_votes, precision=0, label="min decisive judgments for a verdict"
                )
        estimate_md = gr.Markdown("", elem_id="eval-estimate")
        run_btn = gr.Button("Run evaluation", variant="primary", elem_id="eval-run", interactive=engine is not None)
        verdicts = gr.Markdown("", elem_id="eval-verdicts")
        with gr.Accordion("How the verdicts are decided", open=False):
            gr.Markdown(f"{PHASE0_HELP}\n\n{PHASE4_HELP}\n\n{COMPOSITE_HELP}", elem_id="eval-help")
        pairs_df = gr.Dataframe(
            headers=PAIR_COLUMNS, interactive=False, label="Judge pairwise (position-swapped)", elem_id="eval-pairs"
        )
        rank_df = gr.Dataframe(interactive=False, label="Composite ranking", elem_id="eval-ranking", visible=False)
        metrics_df = gr.Dataframe(interactive=False, label="Per-variant metrics", elem_id="eval-metrics")
        plot_win = gr.Image(label="Win rates with 95% CIs", type="filepath", interactive=False, height=260)
        with gr.Row():
            plot_scores = gr.Image(label="Judge scores", type="filepath", interactive=False, height=320)
            plot_len = gr.Image(label="Reply lengths", type="filepath", interactive=False, height=320)
        with gr.Accordion("Report", open=False):
            report_html = gr.HTML("", elem_id="eval-report")
        report_files = gr.File(
            label="Report files (HTML, Markdown, JSON, plots)",
            file_count="multiple",
            interactive=False,
            elem_id="eval-files",
        )
        with gr.Accordion("A/B ledger", open=False):
            ledger_df = gr.Dataframe(headers=LEDGER_COLUMNS, interactive=False, elem_id="eval-ledger")
            ledger_btn = gr.Button("Refresh ledger", size="sm")
        with gr.Accordion("Export and publish an adapter (Hugging Face Hub)", open=False):
            with gr.Row():
                pub_adapter = gr.Dropdown(
                    choices=[adapter_name(v) for v in lora], label="Adapter", elem_id="pub-adapter"
                )
                pub_repo = gr.Textbox(
                    label="Repo id (user/name)", placeholder="your-name/reply-lora", elem_id="pub-repo"
                )
                pub_dry = gr.Checkbox(
                    value=True, label="Dry run (write the card and file list locally)", elem_id="pub-dry"
                )
                pub_public = gr.Checkbox(value=False, label="Public repo")
            with gr.Row():
                pub_merged = gr.Textbox(
                    label="Merged model repo (optional; export it first)",
                    placeholder="your-name/reply-merged",
                    elem_id="pub-merged-repo",
                )
                exp_btn = gr.Button(
                    "Export merged model (bf16 safetensors + card) and the adapter alone", elem_id="export-go"
                )
            exp_msg = gr.Markdown("", elem_id="export-msg")
            pub_btn = gr.Button("Publish", elem_id="pub-go")
            pub_msg = gr.Markdown("", elem_id="pub-msg")
            pub_card = gr.Textbox(label="Model card", lines=12, interactive=False, elem_id="pub-card")

    # ---- handlers --------------------------------------------------------------------------------------------
    def judge_status(jk: str) -> str:
        if jk == "local" and local_problem:
            return f"⚠️ {_t(local_problem)}"
        return _key_status(ctx.settings.anthropic_api_key)

    def on_estimate(src, split, up, ads, rag, jk, lim, request: gr.Request):
        if engine is None or denied(request):  # admin only: it reads the chosen file on the server
            return ""
        path = split if src == "split" else (getattr(up, "name", up) if src == "upload" else ctx.settings.heldout)
        n = count_tweets(path)
        lim = int(lim) if lim not in (None, "") and int(lim) > 0 else 0
        n = min(n, lim) if lim and n else (lim or n)
        if not n:
            return "Pick the tweets to evaluate to see how long it will take."
        return estimate(n, len(ads or []), bool(rag), jk, device)[1]

    def on_open(request: gr.Request):
        no = denied(request)
        if no:
            return no, gr.update(), [], "", gr.update()
        # The public page always says "anthropic"; an admin without a key gets the offline judge preselected.
        judge = gr.update(value="anthropic" if ctx.settings.anthropic_api_key else "local")
        try:
            rows = ledger_rows(data_dir)
        except Exception as exc:  # a broken ledger must not break the tab
            log.exception("ledger unreadable")
            return (
                f"⚠️ The ledger could not be read ({type(exc).__name__}).",
                gr.update(choices=split_choices()),
                [],
                _key_status(ctx.settings.anthropic_api_key),
                judge,
            )
        return "", gr.update(choices=split_choices()), rows, _key_status(ctx.settings.anthropic_api_key), judge

    def on_refresh_adapters(request: gr.Request):
        no = denied(request)
        if no:
            return no, gr.update(), gr.update()
        names = [v for v in (engine.variants() if engine else []) if is_lora(v)]
        return "", gr.update(choices=names, value=names), gr.update(choices=[adapter_name(v) for v in names])

    n_run_out = 10

    def on_run(
        src, split, up, ads, rag, think, jk, jm, lim, we, ww, wl, mv, nm, request: gr.Request, progress=gr.Progress()
    ):
        keep = [gr.update()] * (n_run_out - 1)
        no = denied(request)
        if no:
            return [no] + keep
        if jk == "local" and local_problem:  # refuse before twelve minutes of unparsable answers
            return [f"⚠️ {_t(local_problem)}"] + keep
        try:
            result = run_for_tab(
                ctx,
                source=src,
                split_path=split,
                upload=up,
                adapters=ads or [],
                include_rag=rag,
                thinking=think,
                judge_kind=jk,
                judge_model=jm,
                limit=lim,
                weights=(we, ww, wl),
                min_votes=mv,
                name=nm,
                progress=lambda f, d: progress(f, desc=d),
            )
        except (ValueError, JudgeUnavailable, JudgeError, ModelLoadError) as exc:
            return [f"⚠️ {_t(hide_temp_paths(str(exc), [ctx.settings.gradio_temp_dir]))}"] + keep
        except Exception as exc:
            log.exception("evaluation failed")
            return [
                f"⚠️ The evaluation failed ({_t(type(exc).__name__)}: {_t(str(exc)[:200])}); see the server log. "
                "Finished replies and judge answers are cached, so a re-run resumes."
            ] + keep
        files = _copy_out(result)
        plots = {k: Path(files[k]).read_bytes() for k in ("winrates", "scores", "lengths") if k in files}
        frag = render_html(result, {f"{k}.png": v for k, v in plots.items()})
        _, prow = pair_table(result)
        rh, rrows = ranking_table(result)
        mh, mrows = metrics_table(result)
        return [
            verdict_markdown(result),
            prow,
            gr.update(value=rrows, headers=rh, visible=ranking_has_data(result)),
            gr.update(value=mrows, headers=mh),
            files.get("winrates"),
            files.get("scores"),
            files.get("lengths"),
            frag,
            [files[k] for k in ("html", "markdown", "json") if k in files],
            ledger_rows(data_dir),
        ]

    def on_ledger(request: gr.Request):
        no = denied(request)
        if no:
            return no, gr.update()
        return "", ledger_rows(data_dir)

    def on_export(adapter, request: gr.Request, progress=gr.Progress()):
        no = denied(request)
        if no:
            return no
        try:
            res = export_model(
                adapter or "",
                adapters_dir=ctx.settings.adapters_dir,
                data_dir=data_dir,
                cache_dir=ctx.settings.cache_dir,
                progress=lambda m: progress(None, desc=m),
            )
        except ExportError as exc:
            return f"⚠️ {_t(exc)}"
        except Exception as exc:  # out of memory, disk full: one sentence, the temp folders are gone
            log.exception("export failed")
            return f"⚠️ The export failed ({_t(type(exc).__name__)}); nothing was written. See the server log."
        return f"✅ {_t(res.summary())}"

    def on_publish(adapter, repo, dry, public, merged_repo, request: gr.Request):
        no = denied(request)
        if no:
            return no, ""
        from .publish import PublishError, publish

        try:
            res = publish(
                adapter or "",
                repo or "",
                adapters_dir=ctx.settings.adapters_dir,
                data_dir=data_dir,
                dry_run=bool(dry),
                token=ctx.settings.hf_token,
                offline=ctx.settings.offline,
                private=not public,
                merged_repo=merged_repo or None,
            )
        except PublishError as exc:
            return f"⚠️ {_t(exc)}", ""
        card = (
            Path(res.card_path).read_text(encoding="utf-8") if res.card_path and Path(res.card_path).is_file() else ""
        )
        files = ", ".join(_t(f) for f in res.files)
        return f"✅ {_t(res.message)}\n\nFiles: {files}", card

    def on_judge_change(jk, request: gr.Request):
        # Whether a key is configured is the admins' business only.
        return gr.update(visible=jk == "anthropic"), ("" if denied(request) else judge_status(jk))

    def on_status(jk, request: gr.Request):
        return "" if denied(request) else judge_status(jk)  # whether a key is set is the admins' business only

    tab.select(on_open, None, [admin_msg, split_dd, ledger_df, key_md, judge_kind]).then(
        on_status, [judge_kind], [key_md]
    )
    est_in = [source, split_dd, upload, adapters, include_rag, judge_kind, limit]
    tab.select(on_estimate, est_in, [estimate_md])
    for comp in (source, split_dd, upload, adapters, include_rag, judge_kind, limit):
        comp.change(on_estimate, est_in, [estimate_md], show_progress="hidden")
    refresh_adapters.click(on_refresh_adapters, None, [admin_msg, adapters, pub_adapter])
    judge_kind.change(on_judge_change, [judge_kind], [judge_model, key_md])
    run_btn.click(
        on_run,
        [
            source,
            split_dd,
            upload,
            adapters,
            include_rag,
            thinking,
            judge_kind,
            judge_model,
            limit,
            w_eng,
            w_win,
            w_loss,
            min_votes,
            name,
        ],
        [
            verdicts,
            pairs_df,
            rank_df,
            metrics_df,
            plot_win,
            plot_scores,
            plot_len,
            report_html,
            report_files,
            ledger_df,
        ],
        concurrency_limit=1,
        concurrency_id="model",
    )
    ledger_btn.click(on_ledger, None, [admin_msg, ledger_df])
    pub_btn.click(on_publish, [pub_adapter, pub_repo, pub_dry, pub_public, pub_merged], [pub_msg, pub_card])
    exp_btn.click(on_export, [pub_adapter], [exp_msg], concurrency_limit=1, concurrency_id="export")
