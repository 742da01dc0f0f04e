"""The KV cache of the scheduler's running rows: a growing left-padded cache (CPU default) or fixed slots whose decode
step is captured as CUDA graphs (CUDA default). The scheduler (generation/scheduler.py) owns one and calls merge /
keep / decode from its worker thread."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .attention import decode_attention
from .requests import Event, Request

if TYPE_CHECKING:
    from .scheduler import Scheduler

log = logging.getLogger(__name__)


class DynamicBatch:
    """The running rows and their left-padded KV cache ([rows, heads, T, dim] per layer) + attention mask [rows, T]."""

    def __init__(self):
        self.rows: list[Request] = []
        self.cache = None
        self.mask = None
        self.n_cached: list[int] = []  # real tokens in the cache per row = the next position id

    def merge(self, cache, mask, rows: list[Request], n_cached: list[int]) -> None:
        import torch
        from transformers import DynamicCache

        if not self.rows:
            self.cache, self.mask, self.rows, self.n_cached = cache, mask, list(rows), list(n_cached)
            return
        T, Tn = self.mask.shape[1], mask.shape[1]
        L = max(T, Tn)

        def lpad(x, to, dim):
            if x.shape[dim] == to:
                return x
            shape = list(x.shape)
            shape[dim] = to - x.shape[dim]
            return torch.cat([x.new_zeros(shape), x], dim=dim)

        layers = []
        for old, new in zip(self.cache.layers, cache.layers):
            layers.append(
                (
                    torch.cat([lpad(old.keys, L, 2), lpad(new.keys, L, 2)], 0),
                    torch.cat([lpad(old.values, L, 2), lpad(new.values, L, 2)], 0),
                )
            )
        self.cache = DynamicCache(ddp_cache_data=layers)
        self.mask = torch.cat([lpad(self.mask, L, 1), lpad(mask, L, 1)], 0)
        self.rows += rows
        self.n_cached += n_cached

    def keep(self, idx: list[int]) -> None:
        import torch

        self.rows = [self.rows[i] for i in idx]
        self.n_cached = [self.n_cached[i] for i in idx]
        if not idx:
            self.cache, self.mask = None, None
            return
        sel = torch.tensor(idx, device=self.mask.device)
        self.mask = self.mask.index_select(0, sel)
        # drop leading columns that are padding for every remaining row
        used = self.mask.any(0).nonzero()
        start = int(used[0]) if len(used) else 0
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, sel)[:, :, start:]
            layer.values = layer.values.index_select(0, sel)[:, :, start:]


class SlotLayer:
    """One layer's static KV: [slots, heads, L, dim]; a decode step writes column `pos` (a device tensor, so a captured
    CUDA graph reads the current column at replay)."""

    is_compileable = True
    is_sliding = False
    is_initialized = True

    def __init__(self, keys, values, pos):
        self.keys, self.values, self.pos = keys, values, pos
        self.width = keys.shape[2]  # attention reads columns [0, width) only: views of the same buffer, graph-safe
        self.rows = keys.shape[0]  # and slots [0, rows): the step runs on the smallest bucket holding every live row

    def update(self, key_states, value_states, *args, **kwargs):
        k, v = self.keys[: self.rows], self.values[: self.rows]
        k.index_copy_(2, self.pos, key_states)
        v.index_copy_(2, self.pos, value_states)
        return k[:, :, : self.width], v[:, :, : self.width]

    def get_seq_length(self) -> int:
        return int(self.pos)

    def get_max_length(self) -> int:
        return self.width

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.width, 0


class StaticBatch:
    """Rows in fixed slots of one preallocated KV buffer sharing a write column T: a row that joins has its prompt's KV
    copied into columns [T - n, T); every step writes column T for all slots; the 4D mask says which columns each row
    sees. Shapes never change, so the all-base decode step is captured once as a CUDA graph and replayed (the plain
    per-step host work of a 36-layer forward, ~1,000 kernel launches, was most of today's 80 ms per token).
    A step runs on the first R slots only, R the smallest power of two holding the live rows (rows are moved down into
    free low slots when they leave holes), so one visitor decodes one row, not 32; one graph per (R, width).
    A step with LoRA rows adds each row's adapter delta through the stacked adapters of generation/lora_rows.py (fixed
    shapes, so it is graph-captured too); adapters those cannot express run PEFT's mixed batch eagerly."""

    def __init__(self, sched: "Scheduler", slots: int, max_len: int):
        import torch
        from transformers.cache_utils import Cache

        self.sched = sched
        model = sched.bank.base
        cfg = model.config.get_text_config(decoder=True)
        dev = model.device
        dtype = next(p.dtype for p in model.parameters() if p.dtype.is_floating_point)
        if dtype not in (torch.float16, torch.bfloat16, torch.float32):
            dtype = torch.bfloat16
        heads = cfg.num_key_value_heads
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.S, self.L, self.dev, self.dtype = slots, max_len, dev, dtype
        self.pos = torch.zeros(1, dtype=torch.long, device=dev)
        self.layers = [
            SlotLayer(
                torch.zeros(slots, heads, max_len, hd, dtype=dtype, device=dev),
                torch.zeros(slots, heads, max_len, hd, dtype=dtype, device=dev),
                self.pos,
            )
            for _ in range(cfg.num_hidden_layers)
        ]
        self.cache = Cache(layers=self.layers)
        self.valid = torch.zeros(slots, max_len, dtype=torch.bool, device=dev)
        self.mask4d = torch.zeros(slots, 1, 1, max_len, dtype=dtype, device=dev)
        self.ids = torch.zeros(slots, 1, dtype=torch.long, device=dev)
        self.pos_ids = torch.zeros(slots, 1, dtype=torch.long, device=dev)
        self.graphs: dict[tuple[int, int, str], tuple] = {}  # (rows, width, base|lora) -> (CUDA graph, its logits)
        self._lora = None  # generation/lora_rows.StackedLoRA for the loaded adapters
        self._lora_names: list[str] | None = None
        self.lora_steps = 0  # mixed steps through the stacked adapters (graph-captured on CUDA)
        self.peft_steps = 0  # mixed steps through PEFT's own forward (adapters the stack cannot express)
        # attention reads only [0, width): the smallest bucket past T. Rows are moved left (compaction) once 64+
        # columns at the front are dead, so T stays near the live window and the step reads a small KV slice.
        self.buckets = sorted({b for b in (256, 512, 1024) if b < max_len} | {max_len})
        self.row_buckets = sorted({1 << i for i in range(slots.bit_length()) if (1 << i) < slots} | {slots})
        self.R = slots
        self.graph_failed: str | None = None
        self.profile = sched.config.profile
        self.timings = {"prepare": 0.0, "forward": 0.0}
        self.widths_used: set[int] = set()
        self.rows_used: set[int] = set()
        self.slot_moves = 0
        self.graph_steps = 0
        self.eager_steps = 0
        self.compactions = 0
        self.reset()

    def reset(self) -> None:
        self.rows: list[Request] = []
        self.slot_of: dict[int, int] = {}
        self.n_cached: list[int] = []
        self.starts: list[int] = []  # first column of each row's prompt (host-side: no GPU sync to find dead columns)
        self.T = 0
        self.valid.zero_()

    def _shift(self, delta: int) -> None:
        """Move every row's columns by delta (right if > 0), in place: buffer addresses stay those the graph knows."""
        if delta == 0:
            return
        T = self.T
        if self.rows and T > 0:
            lo = max(0, -delta)
            for layer in self.layers:
                for buf in (layer.keys, layer.values):
                    buf[:, :, lo + delta : T + delta].copy_(buf[:, :, lo:T].clone())
            self.valid[:, lo + delta : T + delta] = self.valid[:, lo:T].clone()
            if delta > 0:
                self.valid[:, :delta] = False
            else:
                self.valid[:, T + delta :] = False
        self.T = T + delta
        self.starts = [x + delta for x in self.starts]

    def _first_used(self) -> int:
        return min(self.starts) if self.rows else self.T

    def merge(self, cache, mask, rows: list[Request], n_cached: list[int]) -> None:
        import torch

        n = mask.shape[1]
        if n > self.L - 1:
            raise ValueError(f"The prompt is too long for this server ({n} tokens; the limit is {self.L - 1}).")
        if not self.rows:
            self.T = 0
        if self.T < n:
            self._shift(n - self.T)
        elif self.T + 1 > self.L:
            self._compact()
        free = sorted(set(range(self.S)) - set(self.slot_of.values()))[: len(rows)]
        sl = torch.tensor(free, device=self.dev)
        for layer, new in zip(self.layers, cache.layers):
            layer.keys[sl, :, self.T - n : self.T] = new.keys.to(self.dtype)
            layer.values[sl, :, self.T - n : self.T] = new.values.to(self.dtype)
        self.valid[sl] = False
        self.valid[sl, self.T - n : self.T] = mask.bool()
        for r, s, c in zip(rows, free, n_cached):
            self.slot_of[r.id] = s
            self.rows.append(r)
            self.n_cached.append(c)
            self.starts.append(self.T - len(r.prompt_ids))

    def keep(self, idx: list[int]) -> None:
        gone = [self.rows[i] for i in range(len(self.rows)) if i not in set(idx)]
        for r in gone:
            self.valid[self.slot_of.pop(r.id)] = False
        self.rows = [self.rows[i] for i in idx]
        self.n_cached = [self.n_cached[i] for i in idx]
        self.starts = [self.starts[i] for i in idx]

    def _pack_slots(self) -> int:
        """The smallest row bucket holding every live row; rows in slots past it move down into free slots below."""
        import torch

        R = next(b for b in self.row_buckets if b >= max(1, len(self.rows)))
        high = [r for r in self.rows if self.slot_of[r.id] >= R]
        if high:
            free = sorted(set(range(R)) - set(self.slot_of.values()))
            src = torch.tensor([self.slot_of[r.id] for r in high], device=self.dev)
            dst = torch.tensor(free[: len(high)], device=self.dev)
            for layer in self.layers:
                for buf in (layer.keys, layer.values):
                    buf[dst, :, : self.T] = buf[src, :, : self.T]
            self.valid[dst] = self.valid[src]
            self.valid[src] = False
            for r, d in zip(high, free):
                self.slot_of[r.id] = d
            self.slot_moves += len(high)
        return R

    def _compact(self) -> None:
        first = self._first_used()
        if first > 0:
            self.compactions += 1
            self._shift(-first)

    def decode(self):
        import torch

        t0 = time.perf_counter()
        if self.T + 1 > self.buckets[0] and self._first_used() >= 64:
            self._compact()
        if self.T + 1 > self.L:
            self._compact()
            while self.T + 1 > self.L:  # the oldest row fills every column: it ends here
                oldest = max(range(len(self.rows)), key=lambda i: self.n_cached[i])
                self.sched._finish(self.rows[oldest], Event("done", reason="length"))
                self.keep([i for i in range(len(self.rows)) if i != oldest])
                self._compact()
        R = self.R = self._pack_slots()
        slots = [self.slot_of[r.id] for r in self.rows]
        ids = torch.zeros(R, 1, dtype=torch.long)
        pos_ids = torch.zeros(R, 1, dtype=torch.long)
        for r, s, c in zip(self.rows, slots, self.n_cached):
            ids[s, 0], pos_ids[s, 0] = r.generated[-1], c
        self.ids[:R].copy_(ids, non_blocking=True)
        self.pos_ids[:R].copy_(pos_ids, non_blocking=True)
        self.pos.fill_(self.T)
        self.valid[:R, self.T] = True  # every slot sees its own new token (free slots: no NaN rows)
        width = next(b for b in self.buckets if b >= self.T + 1)
        m = torch.where(self.valid[:R, :width], 0.0, torch.finfo(self.dtype).min).to(self.dtype)
        self.mask4d[:R, 0, 0, :width].copy_(m)
        adapters = [None] * R
        for r, s in zip(self.rows, slots):
            adapters[s] = r.adapter
        self.widths_used.add(width)
        self.rows_used.add(R)
        for layer in self.layers:
            layer.width, layer.rows = width, R
        if self.profile:
            torch.cuda.synchronize() if self.dev.type == "cuda" else None
            t1 = time.perf_counter()
            self.timings["prepare"] += t1 - t0
        stacked = None if all(a is None for a in adapters) else self._stacked_lora()
        if all(a is None for a in adapters):
            logits = self._step(R, width, lora=False)
        elif stacked is not None:  # every adapter's delta per row in fixed shapes: graph-captured like the base step
            stacked.select(adapters)
            logits = self._step(R, width, lora=True)
            self.lora_steps += 1
        else:  # adapters the stack cannot express: PEFT's own mixed-batch forward, eagerly
            self.eager_steps += 1
            self.peft_steps += 1
            with decode_attention(self.sched.bank.base):
                logits = self.sched._forward(adapters, **self._inputs(R, width)).logits
        if self.profile:
            torch.cuda.synchronize() if self.dev.type == "cuda" else None
            self.timings["forward"] += time.perf_counter() - t1
        self.T += 1
        self.n_cached = [c + 1 for c in self.n_cached]
        return logits[slots, -1, :]

    def _inputs(self, R: int, width: int) -> dict:
        return dict(
            input_ids=self.ids[:R],
            attention_mask=self.mask4d[:R, :, :, :width],
            position_ids=self.pos_ids[:R],
            past_key_values=self.cache,
            cache_position=self.pos,
            use_cache=True,
        )

    def _base_forward(self, R: int, width: int, lora: bool = False):
        import contextlib

        pm = self.sched.bank.peft_model
        base = self.sched.bank.base
        stacked = self._lora if lora else None
        with pm.disable_adapter() if pm is not None else contextlib.nullcontext(), decode_attention(base):
            if stacked is None:
                return base(**self._inputs(R, width)).logits
            stacked.active = True
            try:
                return base(**self._inputs(R, width)).logits
            finally:
                stacked.active = False

    def _stacked_lora(self):
        """The stacked adapters for the adapters loaded now (rebuilt, and their graphs dropped, when that set
        changes); None when they cannot be stacked."""
        bank = self.sched.bank
        names = sorted(bank.loaded)
        if names == self._lora_names:
            return self._lora
        from .lora_rows import StackedLoRA

        if self._lora is not None:
            self._lora.close()
        self.graphs = {k: v for k, v in self.graphs.items() if k[2] != "lora"}
        self._lora_names = names
        self._lora = StackedLoRA.build(bank.peft_model, names, self.S, self.dtype, self.dev) if names else None
        return self._lora

    def warm_graph(self, R: int, width: int) -> None:
        """Capture (R, width) with no live rows: each slot sees only the column the step writes, which a row that
        joins later overwrites. Buffers stay those the graph points at."""
        import torch

        self.valid[:R] = False
        self.valid[:R, self.T] = True
        m = torch.where(self.valid[:R, :width], 0.0, torch.finfo(self.dtype).min).to(self.dtype)
        self.mask4d[:R, 0, 0, :width].copy_(m)
        self.ids[:R].zero_()
        self.pos_ids[:R].zero_()
        self.pos.fill_(self.T)
        for layer in self.layers:
            layer.width, layer.rows = width, R
        self._step(R, width, lora=False)
        self.valid[:R] = False

    def _step(self, R: int, width: int, lora: bool):
        import torch

        use_graph = self.dev.type == "cuda" and self.sched.config.cuda_graph and self.graph_failed is None
        if not use_graph:
            self.eager_steps += 1
            return self._base_forward(R, width, lora)
        key = (R, width, "lora" if lora else "base")
        if key not in self.graphs:
            try:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(2):  # warm-up on the real inputs: rewrites column T with the same values
                        self._base_forward(R, width, lora)
                torch.cuda.current_stream().wait_stream(side)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    logits = self._base_forward(R, width, lora)
                self.graphs[key] = (g, logits)
            except Exception as exc:  # capture is an optimisation: fall back to eager, say why once
                self.graph_failed = f"{type(exc).__name__}: {str(exc)[:200]}"
                log.warning("CUDA graph capture failed, decoding eagerly: %s", self.graph_failed)
                torch.cuda.synchronize()
                self.eager_steps += 1
                return self._base_forward(R, width, lora)
        g, logits = self.graphs[key]
        g.replay()
        self.graph_steps += 1
        return logits
