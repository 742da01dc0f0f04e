"""The grouped decode attention equals transformers' own sdpa path (repeat_kv + masked sdpa) on the same inputs."""

from __future__ import annotations

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from generation.attention import NAME, decode_attention, grouped_decode_attention
from tests.support.tiny_qwen3 import build_model, build_tokenizer


class _Module(torch.nn.Module):
    is_causal = True

    def __init__(self, groups: int):
        super().__init__()
        self.num_key_value_groups = groups


@pytest.mark.parametrize("heads,kv_heads", [(32, 8), (4, 2), (4, 4)])
def test_grouped_decode_attention_equals_sdpa_with_repeated_heads(heads, kv_heads):
    g = torch.Generator().manual_seed(0)
    b, w, d = 5, 37, 16
    q = torch.randn(b, heads, 1, d, generator=g)
    k = torch.randn(b, kv_heads, w, d, generator=g)
    v = torch.randn(b, kv_heads, w, d, generator=g)
    visible = torch.rand(b, w, generator=g) > 0.4
    visible[:, -1] = True  # every row sees its own new token
    mask = torch.where(visible, 0.0, torch.finfo(torch.float32).min)[:, None, None, :]
    m = _Module(heads // kv_heads)
    ours, _ = grouped_decode_attention(m, q, k, v, mask, scaling=d**-0.5)
    ref, _ = sdpa_attention_forward(m, q, k, v, mask, scaling=d**-0.5)
    assert ours.shape == ref.shape == (b, 1, heads, d)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    # a masked column changes nothing: perturbing it must leave the output as it was
    col = int((~visible[0]).nonzero()[0])
    k2 = k.clone()
    k2[0, :, col] += 100.0
    torch.testing.assert_close(grouped_decode_attention(m, q, k2, v, mask, scaling=d**-0.5)[0][0], ours[0])


def test_prefill_shapes_go_to_sdpa_unchanged():
    g = torch.Generator().manual_seed(1)
    q, k, v = (
        torch.randn(2, 4, 6, 8, generator=g),
        torch.randn(2, 2, 6, 8, generator=g),
        torch.randn(2, 2, 6, 8, generator=g),
    )
    m = _Module(2)
    ours, _ = grouped_decode_attention(m, q, k, v, None, scaling=0.3)
    ref, _ = sdpa_attention_forward(m, q, k, v, None, scaling=0.3)
    assert torch.equal(ours, ref)


def test_decode_attention_switches_the_model_and_restores_it():
    model = build_model(build_tokenizer())
    model.config._attn_implementation = "sdpa"
    with decode_attention(model):
        assert model.config._attn_implementation == NAME
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError), decode_attention(model):
        raise RuntimeError("a failed forward")
    assert model.config._attn_implementation == "sdpa"
