"""LoRA for a decode batch whose rows use different adapters, in a form one CUDA graph can hold.

PEFT's mixed-adapter forward (``adapter_names=[...]``) groups rows by adapter in Python on every call, so a step with
any LoRA row ran eagerly: on an H200 a base-vs-LoRA battle took 9.5 s where a base-vs-base one took 1.4 s. Here every
loaded adapter's weights are stacked once per LoRA layer, A as [in, sum of ranks] and B (already scaled) as
[sum of ranks, out], and a per-row selector [rows, 1, sum of ranks] holds 1 on the row's own adapter's block and 0
elsewhere. The layer's output gains ((x @ A) * selector) @ B: the same delta as PEFT for each row (base rows get 0),
with shapes that never change while the set of loaded adapters stays the same. The idea is S-LoRA's / Punica's
batched LoRA, written with two dense matmuls since ranks are small.

Adapters this cannot express (DoRA and other variants, LoRA on embeddings, lora_bias, fan_in_fan_out, extra trained
modules) make ``build`` return None and the caller keeps PEFT's own mixed forward.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def unsupported_reason(peft_model, names: list[str]) -> str | None:
    """Why these adapters cannot be stacked, or None."""
    for name in names:
        cfg = peft_model.peft_config.get(name)
        if cfg is None:
            return f"adapter {name} is not loaded"
        if getattr(cfg, "modules_to_save", None):
            return f"adapter {name} trains whole modules ({cfg.modules_to_save})"
    for mod_name, module in peft_model.named_modules():
        if not hasattr(module, "lora_A"):
            continue
        for name in names:
            if name in getattr(module, "lora_embedding_A", {}):
                return f"adapter {name} has LoRA on an embedding ({mod_name})"
            if name not in module.lora_A:
                continue
            if name in getattr(module, "lora_variant", {}) or getattr(module, "use_dora", {}).get(name):
                return f"adapter {name} uses a LoRA variant such as DoRA ({mod_name})"
            if getattr(module, "lora_bias", {}).get(name):
                return f"adapter {name} has a LoRA bias ({mod_name})"
            if getattr(module, "fan_in_fan_out", False):
                return f"{mod_name} stores its weight transposed (fan_in_fan_out)"
    return None


class StackedLoRA:
    """Forward hooks on every LoRA layer that add the selected adapter's delta per row while ``active`` is set."""

    def __init__(self, peft_model, names: list[str], slots: int, dtype, device):
        import torch

        self.names = list(names)
        ranks = {n: int(peft_model.peft_config[n].r) for n in self.names}
        self.offsets, total = {}, 0
        for n in self.names:
            self.offsets[n] = (total, total + ranks[n])
            total += ranks[n]
        self.total = total
        self.dtype = dtype
        self.sel = torch.zeros(slots, 1, total, dtype=dtype, device=device)
        self.rows = slots
        self.active = False
        self.handles = []
        self.layers = 0
        for module in peft_model.modules():
            if not hasattr(module, "lora_A") or not any(n in module.lora_A for n in self.names):
                continue
            a_parts, b_parts = [], []
            for n in self.names:
                r = ranks[n]
                if n in module.lora_A:
                    a = module.lora_A[n].weight  # [r, in]
                    b = module.lora_B[n].weight * module.scaling[n]  # [out, r]
                    a_parts.append(a.detach().to(device=device, dtype=dtype).t())
                    b_parts.append(b.detach().to(device=device, dtype=dtype).t())
                else:  # this adapter leaves the layer alone: a zero block
                    ref_a = next(iter(module.lora_A.values())).weight
                    ref_b = next(iter(module.lora_B.values())).weight
                    a_parts.append(torch.zeros(ref_a.shape[1], r, dtype=dtype, device=device))
                    b_parts.append(torch.zeros(r, ref_b.shape[0], dtype=dtype, device=device))
            a_cat = torch.cat(a_parts, 1).contiguous()  # [in, total]
            b_cat = torch.cat(b_parts, 0).contiguous()  # [total, out]
            self.handles.append(module.register_forward_hook(self._hook(a_cat, b_cat)))
            self.layers += 1

    @classmethod
    def build(cls, peft_model, names: list[str], slots: int, dtype, device) -> "StackedLoRA | None":
        reason = unsupported_reason(peft_model, names)
        if reason is not None:
            log.info("Mixed-adapter decode steps use PEFT's forward (not graph-captured): %s.", reason)
            return None
        return cls(peft_model, names, slots, dtype, device)

    def _hook(self, a_cat, b_cat):
        def hook(module, args, output):
            if not self.active:
                return None
            x = args[0]
            delta = ((x.to(self.dtype) @ a_cat) * self.sel[: self.rows]) @ b_cat
            return output + delta.to(output.dtype)

        return hook

    def select(self, adapters: list[str | None]) -> None:
        """Row i of the next step uses adapters[i] (None = the base model: a zero delta)."""
        import torch

        sel = torch.zeros(len(adapters), 1, self.total, dtype=self.dtype)
        for i, a in enumerate(adapters):
            if a is not None:
                lo, hi = self.offsets[a]
                sel[i, 0, lo:hi] = 1
        self.rows = len(adapters)
        self.sel[: self.rows].copy_(sel, non_blocking=True)

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
