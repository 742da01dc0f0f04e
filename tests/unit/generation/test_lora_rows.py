"""Stacked adapters (generation/lora_rows.py) give each row exactly PEFT's output for that row's adapter."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model

from generation.lora_rows import StackedLoRA, unsupported_reason
from tests.support.tiny_qwen3 import build_model, build_tokenizer


def _peft(use_dora: bool = False):
    torch.manual_seed(0)
    model = build_model(build_tokenizer())
    # two adapters, different ranks and different target modules: "beta" leaves q_proj alone (a zero block there)
    a = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False, use_dora=use_dora
    )
    b = LoraConfig(r=8, lora_alpha=4, target_modules=["v_proj", "down_proj", "up_proj"], init_lora_weights=False)
    pm = get_peft_model(model, a, adapter_name="alpha")
    pm.add_adapter("beta", b)
    return pm.eval()


def test_each_row_gets_its_own_adapters_output():
    pm = _peft()
    ids = torch.randint(5, 200, (3, 7))
    with torch.no_grad():
        want = []
        for name in (None, "alpha", "beta"):
            if name is None:
                with pm.disable_adapter():
                    want.append(pm(input_ids=ids).logits)
            else:
                pm.set_adapter(name)
                want.append(pm(input_ids=ids).logits)
        stacked = StackedLoRA.build(pm, ["alpha", "beta"], slots=4, dtype=torch.float32, device="cpu")
        assert stacked is not None and stacked.layers > 0
        rows = [None, "alpha", "beta"]
        stacked.select(rows)
        with pm.disable_adapter():
            stacked.active = True
            got = pm(input_ids=ids).logits
            stacked.active = False
            plain = pm(input_ids=ids).logits  # inactive: the hooks add nothing
    for i in range(3):
        torch.testing.assert_close(got[i], want[i][i], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(want[1][1], want[2][1])  # the adapters really differ
    torch.testing.assert_close(plain, want[0])
    stacked.close()
    assert stacked.handles == []


def test_dora_is_refused_by_name_so_the_caller_keeps_peft():
    pm = _peft(use_dora=True)
    reason = unsupported_reason(pm, ["alpha", "beta"])
    assert reason is not None and "adapter alpha" in reason and "DoRA" in reason
    assert StackedLoRA.build(pm, ["alpha", "beta"], slots=2, dtype=torch.float32, device="cpu") is None
    assert unsupported_reason(pm, ["beta"]) is None
