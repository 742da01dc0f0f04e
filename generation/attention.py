"""Decode-step attention for grouped-query models, without copying the KV cache.

transformers' sdpa path calls ``repeat_kv`` whenever a mask is given: with a 4D mask (the static batch always passes
one) it copies every layer's K and V from 8 to 32 heads before attending. Profiled on an H200 (Qwen3-8B shape, 32 rows,
256 columns; bench/gpu_serve_profile.py) those two copies were 5.5 of a 16 ms decode step, more than all the matmuls.

For one new token per row the grouped form needs no copy: view the 32 query heads as [8 kv heads x 4], multiply by
each kv head's K once, softmax in float32, multiply by V. Same arithmetic as transformers' eager attention (bf16
products, float32 softmax); any other shape (prefill, training) goes to sdpa unchanged.
"""

from __future__ import annotations

import contextlib

NAME = "reply_arena_decode"


def grouped_decode_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """query [B, H, q, D]; key/value [B, Hkv, W, D]; returns ([B, q, H, D], None) like transformers' sdpa function."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    b, h, q, d = query.shape
    hkv = key.shape[1]
    if q != 1 or h % hkv or attention_mask is None or attention_mask.dtype == torch.bool:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    scale = scaling if scaling is not None else d**-0.5
    qg = query.reshape(b, hkv, h // hkv, d)  # query head i reads kv head i // (h // hkv), as repeat_kv lays them out
    scores = torch.matmul(qg, key.transpose(-1, -2)).float() * scale  # [B, Hkv, group, W]
    scores = scores + attention_mask[:, :, :, : key.shape[-2]].float()  # [B, 1, 1, W] broadcasts over heads
    probs = scores.softmax(-1).to(value.dtype)
    out = torch.matmul(probs, value)  # [B, Hkv, group, D]
    return out.reshape(b, h, 1, d).transpose(1, 2).contiguous(), None


def register() -> str:
    """Make the function known to transformers under NAME (idempotent)."""
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, grouped_decode_attention)
    return NAME


@contextlib.contextmanager
def decode_attention(model):
    """Run the model's attention layers through grouped_decode_attention inside the block. The scheduler's worker is
    the only thread that runs the model, so switching the config's implementation around a forward is safe."""
    cfg = model.config.get_text_config(decoder=True)
    old = cfg._attn_implementation
    if old not in ("sdpa", "eager"):  # flash / flex / paged kernels already handle GQA themselves
        yield
        return
    register()
    cfg._attn_implementation = NAME
    try:
        yield
    finally:
        cfg._attn_implementation = old
