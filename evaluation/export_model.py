"""Export a trained LoRA adapter as a deployable model: merged into its base as bf16 safetensors with a model card
that carries the evaluation table, plus the adapter alone with its own card.

    python -m evaluation.export_model --adapter NAME [--base PATH_OR_ID] [--adapters-dir adapters] [--data-dir data]

Output under ``<data_dir>/exports/<adapter>/``:
  merged/    config.json, model*.safetensors (bf16), tokenizer, generation_config.json (<|im_end|> as EOS), README.md
  adapter/   the adapter's upload files (evaluation/publish.py's list) + README.md
  export.json what was merged into what, the dtype, the files and the merge check

Why merge: a merged folder serves with any runtime (vLLM, TGI, a GGUF conversion) without PEFT, and the app loads it as
a base (``python app.py --base-model <data_dir>/exports/<adapter>/merged``). A QLoRA adapter merges into the bf16 base,
never into the 4-bit one (rounding to NF4 would wash the update out). The merge check compares next-token logits of
base+adapter and of the merged model on a probe prompt before anything is written. Each folder appears whole (built in
a hidden sibling, then renamed), so ``publish`` never sends half a model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from common.jsonio import replace_dir
from generation.adapters import AdapterError, read_adapter
from generation.config import ModelConfig
from generation.errors import ModelLoadError
from generation.loader import EMBEDDED_ID, resolve_source

from .publish import _latest_eval, build_model_card, exports_dir, upload_files

__all__ = ["ExportError", "ExportResult", "export_model", "exports_dir", "main"]

PROBE = "Hot take: tabs are better than spaces. Reply:"
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class ExportError(RuntimeError):
    """An export that cannot go ahead; one sentence for the UI / CLI. Nothing half-written is left behind."""


@dataclass
class ExportResult:
    adapter: str
    base: str
    dtype: str
    merged_dir: Path
    adapter_dir: Path
    files: list[dict] = field(default_factory=list)
    max_abs_logit_diff: float | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        n = sum(f["bytes"] for f in self.files if f["folder"] == "merged")
        size = f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"
        return (
            f"Merged {self.adapter} into {self.base} ({self.dtype}, {size}) → {self.merged_dir}; adapter alone → "
            f"{self.adapter_dir}; merge check: max |Δlogit| = {self.max_abs_logit_diff:.2e} ({self.seconds:.0f} s)."
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["merged_dir"], d["adapter_dir"] = str(self.merged_dir), str(self.adapter_dir)
        return d


def _files(folder: Path, label: str) -> list[dict]:
    return [
        {"folder": label, "path": p.name, "bytes": p.stat().st_size} for p in sorted(folder.iterdir()) if p.is_file()
    ]


def export_model(
    adapter: str,
    *,
    adapters_dir: str | Path = "adapters",
    data_dir: str | Path = "data",
    base: str | None = None,
    dtype: str = "bfloat16",
    cache_dir: str | Path | None = None,
    repo_id: str | None = None,
    check_tolerance: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Merge ``adapter`` into its base and write merged/ + adapter/ under the exports folder (raises ExportError)."""
    t0 = time.perf_counter()
    say = progress or (lambda m: None)
    adapter = (adapter or "").strip().removeprefix("lora:")
    if not adapter:
        raise ExportError("Pick an adapter to export.")
    if dtype not in _DTYPES:
        raise ExportError(f"dtype {dtype!r} is not one of {', '.join(_DTYPES)}.")
    adir = Path(adapters_dir) / adapter
    try:
        info = read_adapter(adir)
    except AdapterError as exc:
        raise ExportError(str(exc)) from exc
    spec = (base or info.base_model or "").strip()
    mc = ModelConfig(
        base_model="" if spec in ("", EMBEDDED_ID) else spec,
        device="cpu",
        **({"cache_dir": Path(cache_dir)} if cache_dir else {}),
    )
    try:
        path, name, _ = resolve_source(mc)
    except ModelLoadError as exc:
        raise ExportError(
            f"{exc} (the adapter names base {spec or 'the embedded model'!r}; pass --base to override)"
        ) from exc
    out_root = exports_dir(data_dir, adapter)
    out_root.mkdir(parents=True, exist_ok=True)
    tmp_m = out_root / f".merged.tmp-{os.getpid()}"
    tmp_a = out_root / f".adapter.tmp-{os.getpid()}"
    for t in (tmp_m, tmp_a):
        shutil.rmtree(t, ignore_errors=True)
    try:
        say(f"loading {name} in {dtype}")
        torch_dtype = _DTYPES[dtype]
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        except (OSError, ValueError) as exc:
            raise ExportError(f"Could not load the base {name}: {str(exc).splitlines()[0][:200]}") from exc
        tok_src = adir if (adir / "tokenizer_config.json").is_file() else Path(path)
        tok = AutoTokenizer.from_pretrained(str(tok_src))
        say(f"applying {adapter}")
        try:
            pm = PeftModel.from_pretrained(model, str(adir))
        except (OSError, ValueError, RuntimeError) as exc:
            raise ExportError(f"Adapter {adapter} does not fit {name}: {str(exc).splitlines()[0][:200]}") from exc
        pm.eval()
        ids = tok(PROBE, return_tensors="pt")
        with torch.no_grad():
            ref = pm(**ids).logits[:, -1].float()
            say("merging")
            merged = pm.merge_and_unload()
            got = merged(**ids).logits[:, -1].float()
        diff = float((ref - got).abs().max())
        tol = check_tolerance if check_tolerance is not None else (1e-3 if torch_dtype == torch.float32 else 0.25)
        if not diff <= tol:  # also catches NaN
            raise ExportError(
                f"The merged model disagrees with base + adapter (max |Δlogit| {diff:.3g} > {tol}); nothing was "
                "written."
            )
        say("saving merged safetensors")
        merged.save_pretrained(str(tmp_m), safe_serialization=True, max_shard_size="5GB")
        tok.save_pretrained(str(tmp_m))
        if (adir / "generation_config.json").is_file():  # the adapter's: <|im_end|> as EOS, the trained stop
            shutil.copy2(adir / "generation_config.json", tmp_m / "generation_config.json")
        evaluation = _latest_eval(Path(data_dir), adapter)
        rid = repo_id or f"{adapter}-merged"
        (tmp_m / "README.md").write_text(
            build_model_card(adapter, adir, rid, evaluation, merged=True), encoding="utf-8"
        )
        tmp_a.mkdir()
        for p in upload_files(adir):
            shutil.copy2(p, tmp_a / p.name)
        (tmp_a / "README.md").write_text(
            build_model_card(adapter, adir, repo_id or adapter, evaluation), encoding="utf-8"
        )
        replace_dir(tmp_m, out_root / "merged")
        replace_dir(tmp_a, out_root / "adapter")
    except BaseException:
        for t in (tmp_m, tmp_a):
            shutil.rmtree(t, ignore_errors=True)
        raise
    res = ExportResult(
        adapter=adapter,
        base=name,
        dtype=dtype,
        merged_dir=out_root / "merged",
        adapter_dir=out_root / "adapter",
        files=_files(out_root / "merged", "merged") + _files(out_root / "adapter", "adapter"),
        max_abs_logit_diff=diff,
        seconds=time.perf_counter() - t0,
    )
    data = json.dumps({**res.to_dict(), "created": time.time(), "adapter_source": str(adir.resolve())}, indent=1)
    (out_root / "export.json").write_text(data, encoding="utf-8")
    say("done")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m evaluation.export_model",
        description="Merge a LoRA adapter into its base (bf16 safetensors + model card) and copy the adapter alone.",
    )
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--base", help="base model path or hub id (default: the adapter's base_model_name_or_path)")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(_DTYPES))
    ap.add_argument("--repo", help="the Hub repo the card should name (default: <adapter>-merged)")
    ap.add_argument("--adapters-dir", default=os.environ.get("ADAPTERS_DIR", "adapters"))
    ap.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    a = ap.parse_args(argv)
    try:
        res = export_model(
            a.adapter,
            adapters_dir=a.adapters_dir,
            data_dir=a.data_dir,
            base=a.base,
            dtype=a.dtype,
            repo_id=a.repo,
            progress=lambda m: print(m, file=sys.stderr),
        )
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(res.summary())
    for f in res.files:
        print(f"  {f['folder']}/{f['path']}  {f['bytes']:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
