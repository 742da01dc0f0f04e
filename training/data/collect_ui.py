"""Data tab panel "0 · Collect": X API v2 replies (with the post cap and the min_faves check) or an Apify actor run,
into ``<data_dir>/collect/<name>.jsonl``, ready for the import panel below. Wiring only (training/data/collect.py,
training/data/apify.py). Tokens come from the server's env (X_BEARER_TOKEN, APIFY_TOKEN, read by context.Settings);
the page never asks for one."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from security import inert
from training.data.apify import ApifyError, run_actor
from training.data.collect import CollectConfig, CollectError, collect, min_faves_check

log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,80}$")


@dataclass
class CollectPanel:
    path: gr.Textbox  # the file the last run wrote; data_ui copies it into the import panel's server path


def _ids(text: str | None) -> list[str]:
    return [x for x in re.split(r"[\s,]+", text or "") if x]


def _out(data_dir: Path, name: str | None, default: str) -> Path:
    name = (name or "").strip() or default
    if not _NAME.match(name):
        raise CollectError(f"{name!r} is not a file name (letters, digits, '.', '_' or '-').")
    return Path(data_dir) / "collect" / (name if name.endswith(".jsonl") else f"{name}.jsonl")


def _int(v, what: str) -> int | None:
    if v is None or v == "":
        return None
    try:
        return int(v)
    except (TypeError, ValueError) as exc:
        raise CollectError(f"{what} must be a whole number.") from exc


def build_collect_panel(ctx, denied: Callable[[gr.Request], str | None]) -> CollectPanel:
    settings = ctx.settings
    data_dir = Path(settings.data_dir)
    with gr.Accordion("0 · Collect from the X API or Apify", open=False, elem_id="collect-panel"):
        gr.Markdown(
            "Replies for conversation ids (or any search query) from the X API v2, or an Apify actor run. "
            "Tokens come from the server's environment (`X_BEARER_TOKEN`, `APIFY_TOKEN`). A run stops before "
            "the post cap; running the same output again resumes where it stopped."
        )
        with gr.Tab("X API v2"):
            with gr.Row():
                conv = gr.Textbox(label="Conversation ids (comma or newline)", lines=2, elem_id="collect-conv")
                query = gr.Textbox(
                    label="…or a search query",
                    placeholder="conversation_id:1790000000000000000 lang:en",
                    elem_id="collect-query",
                )
            with gr.Row():
                min_faves = gr.Number(label="min_faves (0 = none)", value=0, precision=0, elem_id="collect-min-faves")
                cap = gr.Number(
                    value=500, label="post cap for this run (what X bills)", precision=0, elem_id="collect-cap"
                )
                archive = gr.Checkbox(value=False, label="full archive (/2/tweets/search/all)")
                x_name = gr.Textbox(label="output name", placeholder="x-replies", elem_id="collect-name")
            with gr.Row():
                x_btn = gr.Button("Collect", variant="primary", elem_id="collect-go")
                mf_btn = gr.Button("min_faves check (same conversation with and without)", elem_id="collect-mf")
        with gr.Tab("Apify"):
            with gr.Row():
                actor = gr.Textbox(label="actor", value="apidojo/tweet-scraper", elem_id="apify-actor")
                max_items = gr.Number(label="max items (billing cap)", value=1000, precision=0, elem_id="apify-max")
                a_name = gr.Textbox(label="output name", placeholder="apify-replies", elem_id="apify-name")
            run_input = gr.Code(
                label="actor input (JSON)", language="json", value='{"conversationIds": []}', elem_id="apify-input"
            )
            a_btn = gr.Button("Run actor and download", variant="primary", elem_id="apify-go")
        status = gr.Markdown("", elem_id="collect-status")
        path = gr.Textbox(label="collected file (import it below)", interactive=False, elem_id="collect-path")

    def on_x(ids, q, mf, cp, arch, name, request: gr.Request, progress=gr.Progress()):
        no = denied(request)
        if no:
            return no, gr.update()
        try:
            out = _out(data_dir, name, "x-replies")
            cfg = CollectConfig(
                out=out,
                conversation_ids=_ids(ids),
                query=q or None,
                min_faves=_int(mf, "min_faves") or None,
                max_posts=_int(cp, "The post cap") or 0,
                archive=bool(arch),
                base_url=settings.x_api_base_url,
            )
            rep = collect(cfg, token=settings.x_bearer_token, progress=lambda m: progress(None, desc=m))
        except CollectError as exc:
            return f"⚠️ {inert(str(exc))}", gr.update()
        except (OSError, ValueError) as exc:
            return f"⚠️ {inert(str(exc).splitlines()[0][:300])}", gr.update()
        except Exception as exc:
            log.exception("collect failed")
            return (
                f"⚠️ Collecting failed ({inert(type(exc).__name__)}); pages already saved stay. See the server log.",
                gr.update(),
            )
        notes = "".join(f"\n- {inert(w)}" for w in rep.warnings)
        return f"✅ {inert(rep.summary())}{notes}", str(out)

    def on_mf(ids, mf, cp, arch, request: gr.Request, progress=gr.Progress()):
        no = denied(request)
        if no:
            return no, gr.update()
        try:
            cids = _ids(ids)
            if len(cids) != 1:
                raise CollectError("The min_faves check takes exactly one conversation id.")
            n = _int(mf, "min_faves")
            if not n or n < 1:
                raise CollectError("Set min_faves above 0 for the check (e.g. 10).")
            res = min_faves_check(
                cids[0],
                n,
                _int(cp, "The post cap") or 0,
                data_dir / "collect",
                base_url=settings.x_api_base_url,
                token=settings.x_bearer_token,
                archive=bool(arch),
                progress=lambda m: progress(None, desc=m),
            )
        except CollectError as exc:
            return f"⚠️ {inert(str(exc))}", gr.update()
        except Exception as exc:
            log.exception("min_faves check failed")
            return f"⚠️ The check failed ({inert(type(exc).__name__)}). See the server log.", gr.update()
        return f"✅ {inert(res.summary())}", res.without.out

    def on_apify(act, mx, inp, name, request: gr.Request, progress=gr.Progress()):
        no = denied(request)
        if no:
            return no, gr.update()
        try:
            try:
                payload = json.loads(inp or "{}")
            except ValueError as exc:
                raise ApifyError(f"The actor input is not valid JSON ({exc.msg} at line {exc.lineno}).") from exc
            out = _out(data_dir, name, "apify-replies")
            rep = run_actor(
                act or "",
                payload,
                out,
                token=settings.apify_token,
                base_url=settings.apify_api_url,
                max_items=_int(mx, "max items"),
                progress=lambda m: progress(None, desc=m),
            )
        except (ApifyError, CollectError) as exc:
            return f"⚠️ {inert(str(exc))}", gr.update()
        except Exception as exc:
            log.exception("apify run failed")
            return f"⚠️ The Apify run failed ({inert(type(exc).__name__)}). See the server log.", gr.update()
        return f"✅ {inert(rep.summary())}", str(out)

    x_btn.click(
        on_x,
        [conv, query, min_faves, cap, archive, x_name],
        [status, path],
        concurrency_limit=1,
        concurrency_id="collect",
    )
    mf_btn.click(on_mf, [conv, min_faves, cap, archive], [status, path], concurrency_limit=1, concurrency_id="collect")
    a_btn.click(
        on_apify, [actor, max_items, run_input, a_name], [status, path], concurrency_limit=1, concurrency_id="collect"
    )
    return CollectPanel(path=path)
