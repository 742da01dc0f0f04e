"""Evaluation report: Markdown + self-contained HTML (plots as base64 PNG) + JSON, in one folder per evaluation.

Folder: ``<reports_root>/<UTC timestamp>-<name>/`` with report.md, report.html, report.json and the PNG plots.
It is assembled in a hidden temp folder next to it and renamed into place, so nobody sees half a report.

All user-controlled text (tweets, replies, references, names, paths, judge answers) is HTML-escaped in the HTML
report and made inert (HTML-escaped + Markdown-neutralised) in the Markdown one: a reply like
``<script>alert(1)</script>`` shows up as text.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common.text import TWEET_LIMIT
from generation.variants import friendly_name
from security.escape import html_text as _e
from security.escape import inert_line as _md
from security.escape import own_markdown as _mt

from .gates import COMPOSITE_HELP, PHASE0_HELP, PHASE4_HELP

__all__ = ["write_report", "render_html", "render_markdown", "make_plots", "safe_name", "list_reports", "PAIR_COLUMNS"]

_COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#4b5563"]


def safe_name(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name or "eval").strip("-.")
    return s[:60] or "eval"


def _f(x: Any, fmt: str = "{:.3f}") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return fmt.format(x) if isinstance(x, (int, float)) else str(x)


def _pct(x: Any) -> str:
    return _f(x, "{:.1%}")


# --------------------------------------------------------------------------- #
# Plots (matplotlib Figure API: no pyplot state, safe in Gradio worker threads)
# --------------------------------------------------------------------------- #
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _empty(fig, ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.axis("off")


def winrate_plot(result: dict) -> bytes:
    import numpy as np
    from matplotlib.figure import Figure

    pairs = result.get("pairs") or []
    fig = Figure(figsize=(7, 0.9 + 0.6 * max(1, len(pairs))))
    ax = fig.add_subplot(111)
    if not pairs:
        _empty(fig, ax, "No pairwise comparison in this evaluation")
        return _png(fig)
    y = np.arange(len(pairs))[::-1]
    for k, (p, yy) in enumerate(zip(pairs, y)):
        wr = p.get("win_rate")
        if wr is None:
            continue
        lo, hi = p.get("ci_low") or wr, p.get("ci_high") or wr
        ax.errorbar(
            [wr],
            [yy],
            xerr=[[max(0, wr - lo)], [max(0, hi - wr)]],
            fmt="o",
            capsize=4,
            color=_COLORS[0],
            label="win rate (ties ½), Wilson 95% CI" if k == 0 else None,
        )
        lcd = p.get("length_controlled") or {}
        lc = lcd.get("win_rate_at_equal_length")
        if lc is not None:
            llo, lhi = (
                lcd.get("ci_low") if lcd.get("ci_low") is not None else lc,
                lcd.get("ci_high") if lcd.get("ci_high") is not None else lc,
            )
            ax.errorbar(
                [lc],
                [yy - 0.18],
                xerr=[[max(0, lc - llo)], [max(0, lhi - lc)]],
                fmt="D",
                capsize=3,
                lw=0.9,
                color=_COLORS[4],
                label="at equal length (logistic), Wald 95% CI" if k == 0 else None,
            )
    ax.axvline(0.5, color="#9ca3af", lw=0.8, ls="--")
    ax.set_xlim(0, 1)
    ax.set_yticks(y, [f"{p['a']} vs {p['b']}" for p in pairs])
    ax.set_xlabel("judge win rate of the first contender")
    ax.set_ylim(min(y) - 0.6, max(y) + 0.5)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _png(fig)


def scores_plot(result: dict) -> bytes:
    import numpy as np
    from matplotlib.figure import Figure

    variants = result["settings"]["variants"]
    fig = Figure(figsize=(7, 3.4))
    ax = fig.add_subplot(111)
    hists = {v: result["scores"][v]["histogram"] for v in variants}
    if not any(sum(h.values()) for h in hists.values()):
        _empty(fig, ax, "No parsed judge scores")
        return _png(fig)
    x = np.arange(1, 11)
    w = 0.8 / max(1, len(variants))
    for k, v in enumerate(variants):
        counts = [hists[v].get(str(s), 0) for s in x]
        ax.bar(x - 0.4 + w * (k + 0.5), counts, width=w, color=_COLORS[k % len(_COLORS)], label=v)
    ax.set_xticks(x)
    ax.set_xlabel("judge score (1-10)")
    ax.set_ylabel("replies")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def lengths_plot(result: dict) -> bytes:
    from matplotlib.figure import Figure

    variants = result["settings"]["variants"]
    fig = Figure(figsize=(7, 3.2))
    ax = fig.add_subplot(111)
    lens = {v: [len(it["replies"][v]) for it in result["items"]] for v in variants}
    top = max([max(v) if v else 0 for v in lens.values()] + [300])
    bins = list(range(0, int(top) + 20, 20))
    for k, v in enumerate(variants):
        ax.hist(lens[v], bins=bins, histtype="step", lw=1.6, color=_COLORS[k % len(_COLORS)], label=v)
    ax.axvline(TWEET_LIMIT, color="#dc2626", lw=0.8, ls="--")
    ax.set_xlabel(f"reply length (characters); dashed line = {TWEET_LIMIT}")
    ax.set_ylabel("replies")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def make_plots(result: dict) -> dict[str, bytes]:
    return {
        "winrates.png": winrate_plot(result),
        "scores.png": scores_plot(result),
        "lengths.png": lengths_plot(result),
    }


# --------------------------------------------------------------------------- #
# Tables (shared by HTML, Markdown and the UI)
# --------------------------------------------------------------------------- #
PAIR_COLUMNS = [
    "pair",
    "n",
    "wins",
    "losses",
    "ties",
    "unparsed",
    "win rate",
    "95% CI",
    "at equal length",
    "position-consistent",
    "Mann-Whitney p",
    "Cohen's d",
    "verdict",
]


def pair_table(result: dict) -> tuple[list[str], list[list[str]]]:
    head = list(PAIR_COLUMNS)
    rows = []
    for p in result.get("pairs") or []:
        st = p.get("score_tests") or {}
        mw = (st.get("mann_whitney") or {}).get("p_value")
        d = (st.get("cohens_d") or {}).get("d")
        lc = p.get("length_controlled") or {}
        rows.append(
            [
                f"{p['a']} vs {p['b']}",
                str(p["n"]),
                str(p["wins"]),
                str(p["losses"]),
                str(p["ties"]),
                str(p["unparsed"]),
                _pct(p["win_rate"]),
                f"{_pct(p['ci_low'])} – {_pct(p['ci_high'])}",
                _pct(lc.get("win_rate_at_equal_length")),
                _pct(p.get("position_consistency")),
                _f(mw, "{:.3g}"),
                _f(d, "{:.2f}"),
                p["decision"]["verdict"],
            ]
        )
    return head, rows


def metrics_table(result: dict) -> tuple[list[str], list[list[str]]]:
    head = [
        "variant",
        "judge mean (1-10)",
        "engagement",
        "unparsed scores",
        "ROUGE-1",
        "ROUGE-2",
        "ROUGE-L",
        "distinct-1",
        "distinct-2",
        "mean chars",
        "median",
        "p90",
        f"> {TWEET_LIMIT}",
        "think leak",
        "empty",
    ]
    rows = []
    for v in result["settings"]["variants"]:
        t, s = result["text_metrics"][v], result["scores"][v]
        rows.append(
            [
                v,
                _f(s["mean"], "{:.2f}"),
                _f(s["engagement"], "{:.2f}"),
                str(s["n_unparsed"]),
                _f(t["rouge1"]),
                _f(t["rouge2"]),
                _f(t["rougeL"]),
                _f(t["distinct_1"]),
                _f(t["distinct_2"]),
                _f(t["mean_chars"], "{:.0f}"),
                _f(t["median_chars"], "{:.0f}"),
                _f(t["p90_chars"], "{:.0f}"),
                _pct(t["frac_over_280"]),
                _pct(t["frac_think_leak"]),
                _pct(t["frac_empty"]),
            ]
        )
    return head, rows


def ranking_has_data(result: dict) -> bool:
    """False while every number of the composite ranking is missing (a table of '–' says nothing: it stays hidden)."""
    keys = ("composite", "partial", "engagement", "win_rate", "eval_loss")
    return any(
        r.get(k) is not None and not (isinstance(r.get(k), float) and not math.isfinite(r[k]))
        for r in result.get("ranking") or []
        for k in keys
    )


def ranking_table(result: dict) -> tuple[list[str], list[list[str]]]:
    head = ["rank", "contender", "composite", "partial", "engagement", "judge win rate", "eval loss", "note"]
    rows = [
        [
            str(r["rank"]),
            r["contender"],
            _f(r["composite"]),
            _f(r["partial"]),
            _f(r["engagement"]),
            _pct(r["win_rate"]),
            _f(r["eval_loss"]),
            r["note"],
        ]
        for r in result.get("ranking") or []
    ]
    return head, rows


def verdict_lines(result: dict) -> list[str]:
    out = [f"Is fine-tuning worth it? {result['verdicts']['phase0']['explanation']}"]
    out += [
        f"{friendly_name(v['adapter'])} vs {friendly_name(v['versus'])}: {v['explanation']}"
        for v in result["verdicts"]["phase4"]
    ]
    return out


# --------------------------------------------------------------------------- #
# HTML
# --------------------------------------------------------------------------- #
_CSS = """
.ra-report{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;line-height:1.45;max-width:1100px}
.ra-report table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:.9em}
.ra-report th,.ra-report td{border:1px solid #d1d5db;padding:4px 8px;text-align:left;vertical-align:top}
.ra-report th{background:#f3f4f6}
.ra-report .verdict{font-weight:600}
.ra-report .warn{background:#fef3c7;padding:6px 10px;border-radius:6px}
.ra-report img{max-width:100%}
.ra-report .reply{white-space:pre-wrap}
"""


def _html_table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{_e(cls)}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def render_html(result: dict, plots: dict[str, bytes], max_items: int = 200) -> str:
    s = result["settings"]
    j = result["judge"]
    u = j["usage"]
    parts = [
        f'<div class="ra-report"><style>{_CSS}</style>',
        f"<h1>Evaluation report: {_e(result['name'])}</h1>",
        f"<p>{_e(result['created_at'])} · base model <code>{_e(s['base_model'])}</code> · "
        f"{_e(result['data']['n_items'])} tweets · config <code>{_e(s['config_hash'])}</code></p>",
    ]
    if j.get("weaker"):
        parts.append(f'<p class="warn">⚠️ {_e(j["note"])}</p>')
    parts.append(
        "<h2>Verdicts</h2><ul>" + "".join(f'<li class="verdict">{_e(v)}</li>' for v in verdict_lines(result)) + "</ul>"
    )
    parts.append(
        f"<details><summary>How the verdicts are decided</summary><p>{_e(PHASE0_HELP)}</p><p>{_e(PHASE4_HELP)}</p>"
        f"<p>{_e(COMPOSITE_HELP)}</p></details>"
    )
    parts.append("<h2>Judge pairwise (position-swapped)</h2>" + _html_table(*pair_table(result)))
    parts.append("<h2>Composite ranking</h2>" + _html_table(*ranking_table(result)))
    parts.append("<h2>Per-variant metrics</h2>" + _html_table(*metrics_table(result)))
    k = result["judge_vs_human"]
    parts.append(
        f"<h2>Judge vs humans</h2><p>Cohen's kappa {_e(_f(k.get('kappa')))} ({_e(k.get('interpretation'))}) on "
        f"{_e(k.get('n'))} battles; {_e(k.get('note'))}.</p>"
    )
    parts.append("<h2>Plots</h2>")
    for fname, title in (
        ("winrates.png", "Win rates with 95% CIs"),
        ("scores.png", "Judge score distributions"),
        ("lengths.png", "Reply length distributions"),
    ):
        if fname in plots:
            b64 = base64.b64encode(plots[fname]).decode()
            parts.append(f'<h3>{_e(title)}</h3><img alt="{_e(title)}" src="data:image/png;base64,{b64}">')
    parts.append(
        "<h2>Settings</h2>"
        + _html_table(
            ["setting", "value"],
            [
                [
                    "judge",
                    f"{j['label']} (temperature "
                    f"{j['temperature']}{'' if j['temperature_applied'] else ', not accepted by the model'})",
                ],
                [
                    "judge usage",
                    f"{u['calls']} calls, {u['cached']} cached, {u['retries']} retries, {u['input_tokens']} in + "
                    f"{u['output_tokens']} out tokens, cost "
                    f"{('$%.4f' % u['cost_usd']) if u.get('cost_usd') is not None else 'unknown'}",
                ],
                ["cost note", j["price_note"]],
                ["variants", ", ".join(s["variants"])],
                [
                    "tweets",
                    f"{result['data']['source']} ({result['data']['n_items']} tweets, "
                    f"{result['data']['n_with_reference']} with a reference)",
                ],
                ["sampling", json.dumps(s["sampling"], sort_keys=True)],
                [
                    "replies",
                    f"{result['generation']['n_generated']} generated, {result['generation']['n_cached']} from the "
                    "cache",
                ],
                ["weights", json.dumps(result["weights"])],
                ["decision rule", json.dumps(s["rule"])],
            ],
        )
    )
    parts.append("<h2>Limitations</h2><ul>" + "".join(f"<li>{_e(x)}</li>" for x in result["limitations"]) + "</ul>")
    variants = s["variants"]
    head = ["#", "tweet", "reference"] + [f"{v} (score)" for v in variants]
    rows_html = []
    for n, it in enumerate(result["items"][:max_items], 1):
        cells = [str(n), it["tweet"], " | ".join(it.get("references") or [])]
        cells += [f"{it['replies'][v]}  [{it['scores'][v] if it['scores'][v] is not None else '?'}]" for v in variants]
        rows_html.append("<tr>" + "".join(f'<td class="reply">{_e(c)}</td>' for c in cells) + "</tr>")
    parts.append(
        f"<h2>Replies ({min(len(result['items']), max_items)} of {len(result['items'])})</h2>"
        "<table><thead><tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows_html)
        + "</tbody></table>"
    )
    parts.append("</div>")
    return "\n".join(parts)


def html_document(fragment: str, title: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title></head>'
        f"<body>\n{fragment}\n</body></html>\n"
    )


# --------------------------------------------------------------------------- #
# Markdown
# --------------------------------------------------------------------------- #
def _md_table(head: list[str], rows: list[list[str]], user: bool = False) -> str:
    cell = _md if user else _mt
    lines = ["| " + " | ".join(_mt(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(result: dict, max_items: int = 50) -> str:
    s = result["settings"]
    j = result["judge"]
    u = j["usage"]
    out = [
        f"# Evaluation report: {_md(result['name'])}",
        "",
        f"{_mt(result['created_at'])} · base model {_md(s['base_model'])} · {result['data']['n_items']} tweets · "
        f"config `{s['config_hash']}`",
        "",
    ]
    if j.get("weaker"):
        out += [f"> ⚠️ {_mt(j['note'])}", ""]
    out += ["## Verdicts", ""] + [f"- **{_mt(v)}**" for v in verdict_lines(result)] + [""]
    out += ["## Judge pairwise (position-swapped)", "", _md_table(*pair_table(result)), ""]
    out += ["## Composite ranking", "", _md_table(*ranking_table(result)), "", _mt(COMPOSITE_HELP), ""]
    out += ["## Per-variant metrics", "", _md_table(*metrics_table(result)), ""]
    k = result["judge_vs_human"]
    out += [
        "## Judge vs humans",
        "",
        f"Cohen's kappa {_f(k.get('kappa'))} ({_mt(k.get('interpretation'))}) on "
        f"{k.get('n')} battles; {_mt(k.get('note'))}.",
        "",
    ]
    out += [
        "## Plots",
        "",
        "![win rates](winrates.png)",
        "",
        "![scores](scores.png)",
        "",
        "![lengths](lengths.png)",
        "",
    ]
    cost = u.get("cost_usd")
    out += [
        "## Settings",
        "",
        f"- judge: {_md(j['label'])}, temperature {j['temperature']}"
        + ("" if j["temperature_applied"] else " (not accepted by the model)"),
        f"- judge usage: {u['calls']} calls, {u['cached']} cached, {u['retries']} retries, "
        f"{u['input_tokens']} + {u['output_tokens']} tokens, cost "
        f"{('$%.4f' % cost) if cost is not None else 'unknown'} "
        f"({_mt(j['price_note'])})",
        f"- variants: {_md(', '.join(s['variants']))}",
        f"- tweets: {_md(result['data']['source'])}",
        f"- replies: {result['generation']['n_generated']} generated, {result['generation']['n_cached']} cached",
        f"- sampling: `{json.dumps(s['sampling'], sort_keys=True)}`",
        "",
    ]
    out += ["## Limitations", ""] + [f"- {_mt(x)}" for x in result["limitations"]] + [""]
    variants = s["variants"]
    rows = []
    for it in result["items"][:max_items]:
        rows.append(
            [it["tweet"]]
            + [f"{it['replies'][v]} [{it['scores'][v] if it['scores'][v] is not None else '?'}]" for v in variants]
        )
    out += [
        f"## Replies (first {min(max_items, len(result['items']))})",
        "",
        _md_table(["tweet"] + variants, rows, user=True),
        "",
    ]
    return "\n".join(out)


# --------------------------------------------------------------------------- #
# Writing
# --------------------------------------------------------------------------- #
def write_report(result: dict, reports_root: str | Path) -> dict[str, Any]:
    """Write md/html/json/png into a temp folder, rename it into place; sets result['report_dir'] and ['files']."""
    root = Path(reports_root)
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    final = root / f"{stamp}-{safe_name(result.get('name', 'eval'))}"
    n = 1
    while final.exists():
        n += 1
        final = root / f"{stamp}-{safe_name(result.get('name', 'eval'))}-{n}"
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        plots = make_plots(result)
        for fname, data in plots.items():
            (tmp / fname).write_bytes(data)
        result["report_dir"] = str(final)
        result["files"] = {
            "html": str(final / "report.html"),
            "markdown": str(final / "report.md"),
            "json": str(final / "report.json"),
            **{k.split(".")[0]: str(final / k) for k in plots},
        }
        (tmp / "report.html").write_text(
            html_document(render_html(result, plots), f"Evaluation {result.get('name', '')}"), encoding="utf-8"
        )
        (tmp / "report.md").write_text(render_markdown(result), encoding="utf-8")
        (tmp / "report.json").write_text(
            json.dumps(result, indent=1, ensure_ascii=False, allow_nan=False, default=str), encoding="utf-8"
        )
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        result.pop("report_dir", None)
        result.pop("files", None)
        raise
    return {"dir": final, **{k: Path(v) for k, v in result["files"].items()}}


def list_reports(reports_root: str | Path) -> list[Path]:
    """Finished report folders (newest first); temp folders are skipped."""
    root = Path(reports_root)
    if not root.is_dir():
        return []
    return sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "report.json").is_file()),
        key=lambda p: p.name,
        reverse=True,
    )
