"""Bad model input gets one clear sentence; the embedded default loads offline and really replies."""

from __future__ import annotations

from context import Settings

import pytest

from generation import Engine, ModelConfig, ModelLoadError, load_base
from generation.embedded import ensure_converted
from generation.loader import resolve_device


def test_missing_model_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_base(ModelConfig(base_model=str(tmp_path / "nope"), device="cpu"))


def test_directory_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_base(ModelConfig(base_model=str(tmp_path), device="cpu"))


def test_hub_id_while_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: nothing to fall back on
    offline = Settings.from_env().offline  # context reads HF_HUB_OFFLINE and passes it to the loader
    with pytest.raises(ModelLoadError, match="offline"):
        load_base(ModelConfig(base_model="Qwen/Qwen3-8B", device="cpu", offline=offline))


def test_corrupt_gguf(tmp_path):
    bad = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 1000)
    with pytest.raises(ModelLoadError, match="corrupt"):
        ensure_converted(tmp_path / "cache", gguf=bad)
    assert not (tmp_path / "cache" / "models" / "smollm2-135m-instruct").exists()  # nothing half-written


def test_unreadable_gguf_with_matching_hash(tmp_path):
    from generation.embedded import sha256_file

    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelLoadError, match="could not be read"):
        ensure_converted(tmp_path / "cache", gguf=bad, expected_sha256=sha256_file(bad))


def test_cuda_requested_without_gpu_falls_back_with_message():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this check is for machines without a GPU")
    warnings: list[str] = []
    assert resolve_device("cuda", warnings) == "cpu"
    assert "no CUDA GPU" in warnings[0]
    with pytest.raises(ModelLoadError, match="Unknown device"):
        resolve_device("tpu", [])


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    from context import ROOT

    return load_base(ModelConfig(base_model="", device="cpu", cache_dir=ROOT / ".cache", load_in_4bit=True))


def test_4bit_on_cpu_loads_bf16_with_warning(embedded):
    assert embedded.quantized is None and embedded.dtype == "bfloat16"
    assert any("4-bit" in w for w in embedded.warnings)


def test_embedded_model_replies_for_real(embedded, tmp_path):
    assert embedded.embedded and embedded.name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert 0.2e9 < embedded.memory_bytes < 0.4e9  # 135M params in bf16
    engine = Engine(embedded, tmp_path)
    r = engine.generate("Just shipped my first app to production on a Friday. What could go wrong?", "base")
    assert r.reply.strip() and len(r.reply) <= 280
    assert "<|im_end|>" not in r.reply and "<|im_start|>" not in r.reply
    assert r.new_tokens > 0 and r.tokens_per_s > 0
    # batched generation for evaluation
    out = engine.generate_batch(["Coffee before code?", "Tabs or spaces, final answer?"], "base", batch_size=2)
    assert len(out) == 2 and all(o.reply.strip() for o in out)
