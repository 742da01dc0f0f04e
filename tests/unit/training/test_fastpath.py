"""Packing is only a speed-up if it changes nothing: same loss, same gradients, no cross-example attention."""

from __future__ import annotations

import random

import pytest
import torch

from tests.support.tiny_qwen3 import build_model, build_tokenizer
from training.fastpath import PackedCollator, pack_examples, packing_efficiency, prepare_for_packing


def _examples(vocab: int, lengths, seed=0):
    rnd = random.Random(seed)
    out = []
    for n in lengths:
        ids = [rnd.randrange(5, vocab) for _ in range(n)]
        cut = rnd.randrange(n // 3, n - 2)
        out.append({"input_ids": ids, "labels": [-100] * cut + ids[cut:]})
    return out


@pytest.fixture(scope="module")
def model_and_tok():
    tok = build_tokenizer()
    model = build_model(tok, seed=0).float()
    prepare_for_packing(model)
    return model, tok


def test_pack_rows_exact_size_and_all_tokens_kept():
    ex = _examples(300, [20, 35, 50, 17, 44, 90, 12])
    rows = pack_examples(ex, 128)
    assert all(len(r["input_ids"]) == len(r["labels"]) == len(r["position_ids"]) == 128 for r in rows)
    assert sum(r["n_real"] for r in rows) == sum(len(e["input_ids"]) for e in ex)
    assert len(rows) == 3 and packing_efficiency(rows) > 0.69
    with pytest.raises(ValueError, match="longer than pack_tokens"):
        pack_examples(_examples(300, [200]), 128)


def test_no_attention_across_packed_examples(model_and_tok):
    model, _ = model_and_tok
    a, b = list(range(10, 30)), list(range(40, 75))
    with torch.no_grad():
        packed = model(
            input_ids=torch.tensor([a + b]), position_ids=torch.tensor([list(range(20)) + list(range(35))])
        ).logits[0, 20:]
        alone = model(input_ids=torch.tensor([b])).logits[0]
    assert (packed - alone).abs().max().item() < 1e-4


def test_packed_loss_and_grads_match_padded_batch(model_and_tok):
    model, tok = model_and_tok
    ex = _examples(len(tok), [20, 35, 50, 17, 44], seed=1)
    batch = PackedCollator()(pack_examples(ex, 192, tok.pad_token_id))
    model.zero_grad()
    packed_loss = model(**batch).loss
    packed_loss.backward()
    g_packed = model.model.layers[0].self_attn.q_proj.weight.grad.clone()

    width = max(len(e["input_ids"]) for e in ex)
    ids = torch.tensor([e["input_ids"] + [tok.pad_token_id] * (width - len(e["input_ids"])) for e in ex])
    mask = (torch.arange(width)[None] < torch.tensor([len(e["input_ids"]) for e in ex])[:, None]).long()
    labels = torch.tensor([e["labels"] + [-100] * (width - len(e["labels"])) for e in ex])
    model.zero_grad()
    padded_loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    padded_loss.backward()
    g_padded = model.model.layers[0].self_attn.q_proj.weight.grad.clone()

    assert abs(packed_loss.item() - padded_loss.item()) / padded_loss.item() < 1e-5
    assert torch.allclose(g_packed, g_padded, atol=1e-5, rtol=1e-4)
