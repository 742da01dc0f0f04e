"""The Qwen3 path on a tiny random Qwen3: thinking switch, no think leakage, adapter switching on one base copy."""

from __future__ import annotations

import json

import pytest
import torch

from generation import AdapterError, Engine, ModelConfig, SamplingConfig, load_base
from generation.chat import base_messages, render_prompt
from tests.support.tiny_qwen3 import build_model, build_tokenizer, save_tiny_qwen3

GREEDY = SamplingConfig(temperature=0.0, do_sample=False, max_new_tokens=40)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_qwen3(tmp_path_factory.mktemp("tiny-qwen3"))


@pytest.fixture(scope="module")
def loaded(tiny_dir):
    return load_base(ModelConfig(base_model=str(tiny_dir), device="cpu", cpu_dtype="float32"))


def test_thinking_off_renders_empty_think_block(loaded):
    prompt = render_prompt(loaded.tokenizer, base_messages("hello"), thinking=False)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_thinking_on_leaves_think_to_the_model(loaded):
    prompt = render_prompt(loaded.tokenizer, base_messages("hello"), thinking=True)
    assert prompt.endswith("<|im_start|>assistant\n") and "<think>" not in prompt


def test_sampling_defaults_follow_qwen3_card(loaded, tmp_path):
    e = Engine(loaded, tmp_path)
    off, on = e.default_sampling(False), e.default_sampling(True)
    assert (off.temperature, off.top_p, off.top_k, off.min_p) == (0.7, 0.8, 20, 0.0)
    assert (on.temperature, on.top_p, on.top_k, on.min_p) == (0.6, 0.95, 20, 0.0)


def _teach(model, tokenizer, prompt: str, target: str, steps: int = 150):
    """Overfit the tiny model to answer `prompt` with `target`, so it really emits a think block."""
    ids = tokenizer(prompt + target, return_tensors="pt", add_special_tokens=False)["input_ids"]
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    labels = ids.clone()
    labels[:, :n_prompt] = -100
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return float(loss.detach())


def test_think_content_never_leaks_into_reply(tmp_path):
    tok = build_tokenizer(tmp_path / "m")
    model = build_model(tok, seed=1).float()
    tweet = "Coffee before code?"
    prompt = render_prompt(tok, base_messages(tweet), thinking=True)
    target = "<think>\nsecret plan about coffee\n</think>\n\nCode first, then coffee.<|im_end|>"
    assert _teach(model, tok, prompt, target) < 0.05
    model.save_pretrained(tmp_path / "m")
    loaded = load_base(ModelConfig(base_model=str(tmp_path / "m"), device="cpu", cpu_dtype="float32"))
    engine = Engine(loaded, tmp_path / "adapters")
    events = list(engine.stream(tweet, "base", GREEDY, thinking=True))
    final = events[-1].result
    assert "secret plan" in final.raw, "the model must really have produced thinking for this test to mean anything"
    assert final.thinking == "secret plan about coffee"
    assert final.reply == "Code first, then coffee."
    for ev in events:  # not even a partial stream shows thinking as the reply
        assert "secret" not in ev.reply and "<think>" not in ev.reply


def _make_adapter(base, out_dir, base_name: str, seed: int = 0):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    cfg = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
    )
    pm = get_peft_model(base, cfg)
    pm.save_pretrained(str(out_dir))
    cfg_file = out_dir / "adapter_config.json"
    data = json.loads(cfg_file.read_text())
    data["base_model_name_or_path"] = base_name
    cfg_file.write_text(json.dumps(data))
    pm.unload()  # leave the caller's model unwrapped


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_adapter_switching_on_one_base_copy(tiny_dir, tmp_path):
    adapters = tmp_path / "adapters"
    scratch = load_base(ModelConfig(base_model=str(tiny_dir), device="cpu", cpu_dtype="float32"))
    _make_adapter(scratch.model, adapters / "alpha", str(tiny_dir), seed=1)
    _make_adapter(scratch.model, adapters / "beta", str(tiny_dir), seed=2)

    loaded = load_base(ModelConfig(base_model=str(tiny_dir), device="cpu", cpu_dtype="float32"))
    engine = Engine(loaded, adapters)
    assert engine.variants() == ["base", "lora:alpha", "lora:beta"]
    ids = loaded.tokenizer("hello tweet reply", return_tensors="pt")["input_ids"]
    base_before = _logits(loaded.model, ids)
    base_params = sum(p.numel() for p in loaded.model.parameters())

    with engine.bank.activate("alpha") as m:
        alpha = _logits(m, ids)
    with engine.bank.activate("beta") as m:
        beta = _logits(m, ids)
    with engine.bank.activate(None) as m:
        base_after = _logits(m, ids)

    assert not torch.allclose(alpha, base_before, atol=1e-4)
    assert not torch.allclose(alpha, beta, atol=1e-4)
    assert torch.equal(base_after, base_before)  # disabled adapters = the untouched base
    assert engine.bank.peft_model.base_model.model is loaded.model  # one copy of the base weights
    added = sum(p.numel() for p in engine.bank.peft_model.parameters()) - base_params
    assert 0 < added < base_params * 0.2  # only LoRA matrices were added
    # generation works for every variant through the same engine
    for v in engine.variants():
        r = engine.generate("hello tweet", v, GREEDY)
        assert r.variant == v and r.new_tokens > 0


def test_adapter_for_another_base_is_refused(tiny_dir, tmp_path):
    adapters = tmp_path / "adapters"
    other = build_model(build_tokenizer(), seed=3, hidden=32)
    _make_adapter(other, adapters / "foreign", "someone/other-model")
    loaded = load_base(ModelConfig(base_model=str(tiny_dir), device="cpu", cpu_dtype="float32"))
    engine = Engine(loaded, adapters)
    with pytest.raises(AdapterError, match="trained for base model someone/other-model"):
        engine.bank.load("foreign")
    # same name but different shapes: still a clear sentence, not a tensor-shape traceback
    _make_adapter(other, adapters / "samename", str(tiny_dir))
    with pytest.raises(AdapterError, match="does not fit"):
        engine.bank.load("samename")
    with pytest.raises(AdapterError, match="No adapter named"):
        engine.bank.load("missing")
    assert engine.generate("still works", "base", GREEDY).new_tokens > 0


def test_batched_generation_keeps_order_and_matches_single(loaded, tmp_path):
    engine = Engine(loaded, tmp_path)
    tweets = ["short one", "a much longer tweet about coffee and code and shipping on a friday"]
    batch = engine.generate_batch(tweets, "base", GREEDY, batch_size=2)
    singles = [engine.generate(t, "base", GREEDY) for t in tweets]
    assert [b.reply for b in batch] == [s.reply for s in singles]
