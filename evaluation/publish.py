"""Publish a LoRA adapter to the Hugging Face Hub with a generated model card.

    python -m evaluation.publish --adapter NAME --repo user/name [--merged-repo user/name-merged] [--no-report]
                                 [--dry-run] [--public] [--adapters-dir D] [--data-dir D]

The card (README.md) holds: base model, data summary (adapter's dataset.json), LoRA + training config
(adapter_config.json, training_config.yaml), training metrics (metrics.json), the latest evaluation of this adapter
from the A/B ledger (win rates, verdicts, report path), limitations and a usage snippet.

Upload: ``HfApi(token).create_repo(repo_id, exist_ok=True)`` + ``upload_folder`` of a staged copy of the adapter
(weights, configs, tokenizer files, card; no checkpoints or optimizer state) and, unless ``--no-report``, the latest
evaluation report's files under ``evaluation/``. ``--merged-repo``: also the merged model that
``python -m evaluation.export_model`` wrote to ``<data_dir>/exports/<adapter>/merged`` (its own repo, its own card).
Token from ``HF_TOKEN``.
Offline (``HF_HUB_OFFLINE=1``) or without a token it stops with one sentence. ``--dry-run`` writes the card and the
list of files that would be uploaded to ``<data_dir>/publish/<adapter>/`` and touches no network.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common.flags import env_flag
from common.text import TWEET_LIMIT
from generation.variants import adapter_name, lora_variant

__all__ = [
    "PublishError",
    "PublishResult",
    "upload_files",
    "report_files",
    "exports_dir",
    "build_model_card",
    "publish",
    "main",
]

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_SKIP_DIRS = {"checkpoints", "runs", "wandb", "__pycache__"}
_SKIP_FILES = re.compile(r"^(optimizer\.pt|scheduler\.pt|rng_state.*\.pth|training_args\.bin|.*\.tmp|\..*)$")


class PublishError(RuntimeError):
    """A publish that cannot go ahead; the message is one sentence for the UI / CLI."""


@dataclass
class PublishResult:
    adapter: str
    repo_id: str
    dry_run: bool
    card_path: Path
    files: list[str]
    url: str | None = None
    message: str = ""
    extra: dict = field(default_factory=dict)


def upload_files(adapter_dir: Path) -> list[Path]:
    """Files that go to the Hub: everything at the adapter's top level except training state and hidden/temp files."""
    out = []
    for p in sorted(Path(adapter_dir).iterdir()):
        if p.is_dir() or p.name in _SKIP_DIRS or _SKIP_FILES.match(p.name) or p.name == "README.md":
            continue
        out.append(p)
    return out


def exports_dir(data_dir: str | Path, adapter: str) -> Path:
    """Where evaluation/export_model.py writes merged/ and adapter/ for an adapter."""
    return Path(data_dir) / "exports" / adapter


def report_files(evaluation: dict | None) -> list[Path]:
    """The evaluation report's files (md, html, json, plots) that go to the adapter repo under evaluation/."""
    folder = Path(evaluation["report_path"]) if evaluation and evaluation.get("report_path") else None
    if folder is None or not folder.is_dir():
        return []
    return [
        p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in {".md", ".html", ".json", ".png", ".csv"}
    ]


def _stage_merged(stage: Path, files: list[Path], card: str) -> None:
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    for p in files:
        try:
            os.link(p, stage / p.name)
        except OSError:  # another filesystem, or no hard links there
            shutil.copy2(p, stage / p.name)
    (stage / "README.md").write_text(card, encoding="utf-8")


def _read_json(p: Path) -> dict:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _read_yaml(p: Path) -> dict:
    try:
        import yaml

        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except Exception:
        return {}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    return str(v)


def _latest_eval(data_dir: Path, adapter: str) -> dict | None:
    """Newest ledger rows for this adapter + its report.json (if still on disk)."""
    path = data_dir / "ledger.sqlite3"
    if not path.is_file():
        return None
    from .ledger import Ledger

    led = Ledger(data_dir)
    try:
        rows = [r for r in led.list(500) if r.adapter in (adapter, lora_variant(adapter))]
    finally:
        led.close()
    if not rows:
        return None
    newest = [r for r in rows if r.eval_id == rows[0].eval_id]
    report = _read_json(Path(newest[0].report_path) / "report.json") if newest[0].report_path else {}
    return {"rows": newest, "report": report, "report_path": newest[0].report_path}


def _yaml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid YAML scalar, quotes and all


def build_model_card(
    adapter: str,
    adapter_dir: Path,
    repo_id: str,
    evaluation: dict | None = None,
    report_link: str | None = None,
    merged: bool = False,
) -> str:
    """The adapter's card; ``merged=True``: the card of the adapter merged into its base
    (evaluation/export_model.py)."""
    adapter_dir = Path(adapter_dir)
    acfg = _read_json(adapter_dir / "adapter_config.json")
    tcfg = _read_yaml(adapter_dir / "training_config.yaml")
    data = _read_json(adapter_dir / "dataset.json")
    metrics = _read_json(adapter_dir / "metrics.json")
    base = acfg.get("base_model_name_or_path") or metrics.get("base_model") or tcfg.get("base_model") or "unknown"
    base_is_hub = bool(re.match(r"^[\w.-]+/[\w.-]+$", str(base))) and not str(base).startswith(("/", "."))
    front = [
        "---",
        "library_name: peft",
        "pipeline_tag: text-generation",
        "tags:",
        "- lora",
        "- peft",
        "- reply-arena",
        "- twitter-replies",
    ]
    if merged:
        front[1:2] = ["library_name: transformers"]
        front.remove("- peft")
        front += ["- merged"]
    if base_is_hub:
        front.insert(1, f"base_model: {_yaml_str(str(base))}")
        if merged:
            front.insert(2, "base_model_relation: finetune")
    front.append("---")

    what = (
        f"`{base}` with the LoRA adapter `{adapter}` merged into its weights (bf16 safetensors; no PEFT needed)"
        if merged
        else "A LoRA adapter"
    )
    lines = front + [
        "",
        f"# {adapter}" + (" (merged)" if merged else ""),
        "",
        f"{what} that writes replies to tweets (X posts), trained and evaluated with Reply Arena"
        + ("" if merged else f" on top of `{base}`")
        + f". Published as `{repo_id}`.",
        "",
    ]
    lines += [
        "## Base model",
        "",
        f"- `{base}`" + ("" if base_is_hub else " (a local or embedded model, not a Hub id)"),
        f"- quantization during training: {metrics.get('quantized') or 'none'}; dtype "
        f"{metrics.get('dtype', 'unknown')}",
        "",
    ]
    lines += ["## Data", ""]
    if data or metrics.get("n_train"):
        lines += [
            f"- source: `{Path(str(data.get('source', 'unknown'))).name}` ({data.get('kind', 'unknown')})",
            f"- {data.get('n_train', metrics.get('n_train', '?'))} training pairs, "
            f"{data.get('n_eval', metrics.get('n_eval', '?'))} eval pairs"
            " (split grouped by parent tweet)",
            f"- dataset sha256: `{str(data.get('sha256', metrics.get('dataset_sha256', 'unknown')))[:16]}…`",
            "",
        ]
    else:
        lines += ["- no dataset.json in the adapter folder: data unknown", ""]
    lines += ["## Configuration", "", "| setting | value |", "|---|---|"]
    lora = {
        "r": acfg.get("r"),
        "lora_alpha": acfg.get("lora_alpha"),
        "lora_dropout": acfg.get("lora_dropout"),
        "target_modules": acfg.get("target_modules"),
    }
    train_keys = (
        "learning_rate",
        "epochs",
        "max_steps",
        "micro_batch_size",
        "grad_accum",
        "warmup_ratio",
        "weight_decay",
        "max_seq_len",
        "load_in_4bit",
        "seed",
    )
    for k, v in list(lora.items()) + [(k, tcfg.get(k)) for k in train_keys]:
        if v is not None:
            lines.append(f"| {k} | {_fmt(v)} |")
    lines.append("")
    lines += ["## Training metrics", ""]
    shown = [
        (k, metrics.get(k))
        for k in (
            "eval_loss",
            "best_eval_loss",
            "first_eval_loss",
            "train_loss",
            "global_step",
            "epochs_done",
            "early_stopped",
            "train_runtime_s",
            "device",
        )
    ]
    shown = [(k, v) for k, v in shown if v is not None]
    lines += [f"- {k}: {_fmt(v)}" for k, v in shown] or ["- no metrics.json in the adapter folder"]
    lines.append("")
    lines += ["## Evaluation", ""]
    if evaluation:
        rep = evaluation.get("report") or {}
        judge = (rep.get("judge") or {}).get("label") or (
            evaluation["rows"][0].metrics.get("judge") if evaluation["rows"] else "?"
        )
        n_items = (rep.get("data") or {}).get("n_items") or (
            evaluation["rows"][0].metrics.get("n_items") if evaluation["rows"] else "?"
        )
        lines += [
            f"LLM-judge evaluation on {n_items} held-out tweets, judge {judge}, each pair judged twice with "
            "positions swapped (disagreement = tie).",
            "",
            "| versus | judge win rate (ties ½) | 95% CI | p (sign test) | verdict |",
            "|---|---|---|---|---|",
        ]
        for r in evaluation["rows"]:
            m = r.metrics
            wr = f"{m['win_rate']:.1%}" if m.get("win_rate") is not None else "–"
            ci = f"{m['ci_low']:.1%} – {m['ci_high']:.1%}" if m.get("ci_low") is not None else "–"
            p = f"{m['p_value']:.3g}" if m.get("p_value") is not None else "–"
            lines.append(f"| {r.versus} | {wr} | {ci} | {p} | {r.verdict} |")
        lines.append("")
        link = report_link or evaluation.get("report_path")
        if link:
            lines += [f"Full report: {link}", ""]
    else:
        lines += ["Not evaluated with Reply Arena's Evaluate tab yet.", ""]
    lines += [
        "## Limitations",
        "",
        "- Judged by an LLM on a small held-out set; win rates have wide confidence intervals and reflect the "
        "judge's taste (criteria: engagement, relevance, tone, wit, concision), not measured engagement.",
        "- Trained on public replies; it can reproduce their biases, tone and factual errors. Review replies before "
        "posting.",
        f"- Replies are meant to be at most {TWEET_LIMIT} characters; longer generations are cut at a word boundary by "
        "the app.",
        "- English tweets only were in the training data unless the data summary says otherwise.",
        "",
    ]
    if merged:
        lines += [
            "## Usage",
            "",
            "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f'model = AutoModelForCausalLM.from_pretrained({json.dumps(repo_id)}, dtype="bfloat16")',
            f"tokenizer = AutoTokenizer.from_pretrained({json.dumps(repo_id)})",
            "```",
            "",
            f"In Reply Arena: `python app.py --base-model <this folder or {repo_id}>`.",
            "",
        ]
    else:
        lines += [
            "## Usage",
            "",
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            "",
            f"base = AutoModelForCausalLM.from_pretrained({json.dumps(str(base))})",
            f"model = PeftModel.from_pretrained(base, {json.dumps(repo_id)})",
            f"tokenizer = AutoTokenizer.from_pretrained({json.dumps(repo_id)})",
            "```",
            "",
        ]
    lines += [f"_Card generated by Reply Arena on {datetime.now(timezone.utc).date().isoformat()}._", ""]
    return "\n".join(lines)


def publish(
    adapter: str,
    repo_id: str,
    *,
    adapters_dir: str | Path = "adapters",
    data_dir: str | Path = "data",
    dry_run: bool = False,
    token: str | None = None,
    offline: bool = False,
    private: bool = True,
    api=None,
    report_link: str | None = None,
    merged_repo: str | None = None,
    include_report: bool = True,
) -> PublishResult:
    """Dry run: write card + file list locally. Otherwise create the repo(s) and upload (raises PublishError).

    ``token`` / ``offline``: the caller's HF_TOKEN and HF_HUB_OFFLINE (context.Settings in the app, ``main`` here)."""
    adapter = (adapter or "").strip()
    adapter = adapter_name(adapter) or adapter
    repo_id = (repo_id or "").strip()
    if not adapter:
        raise PublishError("Pick an adapter to publish.")
    if not _REPO_ID.match(repo_id):
        raise PublishError(f"{repo_id!r} is not a Hub repo id; use the form user/name.")
    adir = Path(adapters_dir) / adapter
    if not (adir / "adapter_config.json").is_file():
        raise PublishError(f"No adapter named {adapter!r} in {adapters_dir} (no adapter_config.json).")
    data_dir = Path(data_dir)
    merged_repo = (merged_repo or "").strip() or None
    if merged_repo and not _REPO_ID.match(merged_repo):
        raise PublishError(f"{merged_repo!r} is not a Hub repo id; use the form user/name.")
    if merged_repo == repo_id:
        raise PublishError("The merged model needs its own repo (--merged-repo differs from --repo).")
    mdir = exports_dir(data_dir, adapter) / "merged"
    merged_files: list[Path] = []
    if merged_repo:
        if not (mdir / "config.json").is_file():
            raise PublishError(
                f"No merged model for {adapter} in {mdir}; export it first "
                f"(python -m evaluation.export_model --adapter {adapter})."
            )
        merged_files = [p for p in sorted(mdir.iterdir()) if p.is_file() and p.name != "README.md"]
    files = upload_files(adir)
    evaluation = _latest_eval(data_dir, adapter)
    card = build_model_card(adapter, adir, repo_id, evaluation, report_link)
    reports = report_files(evaluation) if include_report else []
    names = [p.name for p in files] + ["README.md"] + [f"evaluation/{p.name}" for p in reports]
    # A local copy of the card and the file list, for a dry run and as a record of what was uploaded.
    out = data_dir / "publish" / adapter
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(card, encoding="utf-8")
    manifest = {
        "repo_id": repo_id,
        "adapter": adapter,
        "adapter_dir": str(adir.resolve()),
        "private": private,
        "dry_run": dry_run,
        "files": [{"path": p.name, "bytes": p.stat().st_size} for p in files]
        + [{"path": "README.md", "bytes": len(card.encode())}]
        + [{"path": f"evaluation/{p.name}", "bytes": p.stat().st_size, "from": str(p)} for p in reports],
    }
    merged_card = (
        build_model_card(adapter, adir, merged_repo, evaluation, report_link, merged=True) if merged_repo else ""
    )
    if merged_repo:  # the card names the repo it goes to, so it is written here, not taken from the export
        (out / "merged_README.md").write_text(merged_card, encoding="utf-8")
        manifest["merged"] = {
            "repo_id": merged_repo,
            "folder": str(mdir.resolve()),
            "files": [{"path": p.name, "bytes": p.stat().st_size} for p in merged_files]
            + [{"path": "README.md", "bytes": len(merged_card.encode())}],
        }
    (out / "upload_manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    extra = {"manifest": manifest}
    n_all = len(names) + (len(merged_files) + 1 if merged_repo else 0)

    if dry_run:
        more = f" and {len(merged_files) + 1} merged-model files for {merged_repo}" if merged_repo else ""
        return PublishResult(
            adapter,
            repo_id,
            True,
            out / "README.md",
            names,
            None,
            f"Dry run: wrote the model card and the list of {len(names)} files for {repo_id}{more} to "
            f"{out / 'upload_manifest.json'}; nothing was uploaded.",
            extra,
        )

    if offline:
        raise PublishError(
            "The Hub is unreachable in offline mode (HF_HUB_OFFLINE=1); unset it to publish, or use a dry run."
        )
    if not token:
        raise PublishError("Set HF_TOKEN (a Hugging Face write token) to publish, or use a dry run.")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    stage = Path(tempfile.mkdtemp(prefix=f"publish-{adapter}-"))
    stage_m = out / ".stage-merged"  # beside the export (same disk): hard links, not a copy of a 16 GB model
    try:
        for p in files:
            shutil.copy2(p, stage / p.name)
        (stage / "README.md").write_text(card, encoding="utf-8")
        if reports:
            (stage / "evaluation").mkdir()
            for p in reports:
                shutil.copy2(p, stage / "evaluation" / p.name)
        target = repo_id
        try:
            repo = api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
            api.upload_folder(
                folder_path=str(stage),
                repo_id=repo_id,
                repo_type="model",
                commit_message=f"Upload LoRA adapter {adapter} from Reply Arena",
            )
            if merged_repo:
                target = merged_repo
                mrepo = api.create_repo(repo_id=merged_repo, repo_type="model", private=private, exist_ok=True)
                _stage_merged(stage_m, merged_files, merged_card)
                api.upload_folder(
                    folder_path=str(stage_m),
                    repo_id=merged_repo,
                    repo_type="model",
                    commit_message=f"Upload {adapter} merged into its base from Reply Arena",
                )
                extra["merged_url"] = str(getattr(mrepo, "url", "") or f"https://huggingface.co/{merged_repo}")
        except Exception as exc:  # HfHubHTTPError, network errors: one sentence
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (401, 403):
                raise PublishError(
                    f"The Hub refused the token for {target} (HTTP {status}); use a token with write access."
                ) from exc
            raise PublishError(
                f"Upload to {target} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            ) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        shutil.rmtree(stage_m, ignore_errors=True)
    url = str(getattr(repo, "url", "") or f"https://huggingface.co/{repo_id}")
    also = f" and the merged model to {extra['merged_url']}" if merged_repo else ""
    return PublishResult(
        adapter,
        repo_id,
        False,
        out / "README.md",
        names,
        url,
        f"Published {adapter} to {url}{also} ({n_all} files).",
        extra,
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m evaluation.publish", description="Push a LoRA adapter + model card to the Hub."
    )
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--repo", required=True, help="user/name")
    ap.add_argument("--merged-repo", help="also push the merged model (python -m evaluation.export_model) to this repo")
    ap.add_argument("--no-report", action="store_true", help="leave the evaluation report out of the adapter repo")
    ap.add_argument("--dry-run", action="store_true", help="write the card and the file list locally; upload nothing")
    ap.add_argument("--public", action="store_true", help="create a public repo (default: private)")
    ap.add_argument("--adapters-dir", default=os.environ.get("ADAPTERS_DIR", "adapters"))
    ap.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    a = ap.parse_args(argv)
    try:
        res = publish(
            a.adapter,
            a.repo,
            adapters_dir=a.adapters_dir,
            data_dir=a.data_dir,
            dry_run=a.dry_run,
            private=not a.public,
            merged_repo=a.merged_repo,
            include_report=not a.no_report,
            token=os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"),
            offline=env_flag(os.environ.get("HF_HUB_OFFLINE")),
        )
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(res.message)
    print(f"card: {res.card_path}")
    man = res.extra.get("manifest") or {}
    for f in man.get("files", []):
        print(f"  {res.repo_id}: {f['path']}  ({f['bytes']:,} bytes)")
    for f in (man.get("merged") or {}).get("files", []):
        print(f"  {man['merged']['repo_id']}: {f['path']}  ({f['bytes']:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
