"""Choosing each row's next token from a batch of logits, each row with its own sampling settings and generator."""

from __future__ import annotations

from .requests import Request


def sample_next(logits, rows: list[Request]) -> list[int]:
    """Next token per row: greedy rows by argmax; sampled rows by temperature / top-k / top-p / min-p filtering on the
    device (batched), then one draw per row on the CPU from the row's own generator."""
    import torch

    logits = logits.float()
    for i, r in enumerate(rows):
        p = r.sampling.repetition_penalty
        if p and p != 1.0:
            seen = torch.tensor(sorted(set(r.prompt_ids + r.generated)), device=logits.device)
            s = logits[i, seen]
            logits[i, seen] = torch.where(s < 0, s * p, s / p)
    greedy = [i for i, r in enumerate(rows) if not (r.sampling.do_sample and r.sampling.temperature > 0)]
    out = [0] * len(rows)
    if greedy:
        g = logits[greedy].argmax(-1).tolist()
        for i, t in zip(greedy, g):
            out[i] = int(t)
    sampled = [i for i in range(len(rows)) if i not in set(greedy)]
    if sampled:
        V = logits.shape[-1]
        ks = [
            int(rows[i].sampling.top_k) if rows[i].sampling.top_k and rows[i].sampling.top_k > 0 else V for i in sampled
        ]
        K = min(V, max(ks))
        temps = torch.tensor([float(rows[i].sampling.temperature) for i in sampled], device=logits.device)
        vals, idx = (logits[sampled] / temps[:, None]).topk(K, dim=-1)
        ar = torch.arange(K, device=logits.device)
        vals = vals.masked_fill(ar[None, :] >= torch.tensor(ks, device=logits.device)[:, None], float("-inf"))
        probs = vals.softmax(-1)
        top_p = torch.tensor([float(rows[i].sampling.top_p or 1.0) for i in sampled], device=logits.device)
        cum = probs.cumsum(-1)
        probs = probs.masked_fill((cum - probs) > top_p[:, None], 0.0)  # keep the smallest prefix reaching top_p
        min_p = torch.tensor([float(rows[i].sampling.min_p or 0.0) for i in sampled], device=logits.device)
        probs = probs.masked_fill(probs < min_p[:, None] * probs[:, :1], 0.0)
        probs, idx = probs.cpu(), idx.cpu()
        for j, i in enumerate(sampled):
            choice = int(torch.multinomial(probs[j], 1, generator=rows[i].generator))
            out[i] = int(idx[j, choice])
    return out
