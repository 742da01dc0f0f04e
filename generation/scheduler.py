"""One generation scheduler for the whole app: a bounded queue and one worker thread that owns the model.

Every request (Generate, Arena, Evaluate) is submitted here. The worker runs *continuous batching*: before each decode
step it prefills the requests waiting in the queue (left-padded, one forward) and appends their KV cache rows to the
running batch; each step decodes one token for every row; a row leaves as soon as it is finished or its caller went
away, and its KV row is dropped. So 16 visitors share each weight read instead of waiting in line behind a lock.

Rows may use different variants: base and every LoRA adapter decode in the same forward through PEFT's mixed-adapter
batches (``adapter_names=[...]`` per row, ``"__base__"`` for the base model) -- no global "active adapter" switch.

Sampling is per row and never touches the process-wide RNG: each request carries its own ``torch.Generator`` (seeded
from the caller's seed, or from ``os.urandom`` -- Arena requests always are), so a public seed cannot reproduce an Arena
reply (issue 12.2).

Callers read tokens from a per-request queue. No lock is ever held while a caller is suspended in a ``yield``; a
caller that closes its generator (Gradio does this from another thread when a tab closes) cancels the request, which
frees its batch row at the next step (issue 12.1).

Why not transformers' own continuous batching (5.17 ``generate_batch`` / ``init_continuous_batching``, paged KV cache)?
Evaluated first (numbers in /work/shared/GPU.md: 465 replies/min at 32 requests with CUDA graphs, 1,239 at 128). It
cannot serve this app as is: ``add_request`` takes no adapter per request (PEFT's ``adapter_names`` never reaches the
model), sampling draws from the global torch RNG (no per-request ``torch.Generator``, which issue 12.2 requires), its
async mode was broken on the H200 and its compile level failed in inductor. What we need from it -- join at the next
step, leave when done, a KV row per request -- is ~300 lines on top of ``DynamicCache``, so we own it here.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

from .attention import decode_attention
from .config import SamplingConfig

log = logging.getLogger(__name__)

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed batch


class SchedulerBusy(RuntimeError):
    """The queue is full; the message is one sentence for the visitor."""


class RequestCancelled(RuntimeError):
    """The request was cancelled before it finished."""


def os_generator(seed: int | None = None):
    """A CPU torch.Generator of its own: the given seed, else 64 bits from the OS (never the process-wide RNG)."""
    import torch

    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed) if seed is not None else int.from_bytes(os.urandom(8), "little") & ((1 << 63) - 1))
    return g


@dataclass
class SchedulerConfig:
    """Batching limits. Defaults: 32 rows fill an H200's decode step (~3.5 ms weight read) well; 8 on a CPU."""

    max_batch: int = field(default=0, metadata={"help": "rows decoded together; 0 = 32 on CUDA, 8 on CPU"})
    max_waiting: int = field(
        default_factory=lambda: int(os.environ.get("REPLY_ARENA_MAX_WAITING", "64")),
        metadata={"help": "requests waiting beyond this get a 'busy, try again' message"},
    )
    long_reply_chars: int = field(
        default=300, metadata={"help": "stop a row once its answer is past this many characters"}
    )
    kv: str = field(
        default_factory=lambda: os.environ.get("REPLY_ARENA_KV", "auto"),
        metadata={
            "help": "auto | static | dynamic: static = fixed [rows, L] KV slots (CUDA default; decode step "
            "captured as one CUDA graph), dynamic = growing left-padded cache (CPU default)"
        },
    )
    max_len: int = field(
        default=1536, metadata={"help": "static KV: columns per row (prompt + reply must fit; rows past it end)"}
    )
    cuda_graph: bool = field(
        default_factory=lambda: os.environ.get("REPLY_ARENA_CUDA_GRAPH", "1") != "0",
        metadata={"help": "replay the all-base decode step as a CUDA graph (static KV on CUDA only)"},
    )
    join_wait_ms: float = field(
        default=-1.0,
        metadata={
            "help": "while rows are decoding, let newcomers wait up to this long so several join in one prefill "
            "(each prefill pauses every running row); 0 = join at the next step; -1 = 30 ms on CUDA (H200, 16 "
            "visitors, two runs: 1,344 -> 1,440 and 1,338 -> 1,338 replies/min, p95 battle 1.53 -> 1.32 and "
            "1.59 -> 1.52 s), 0 on the CPU"
        },
    )
    join_min: int = field(default=4, metadata={"help": "this many waiting requests join at once without waiting"})


@dataclass
class Event:
    """What a caller reads: a queue position while waiting, new token ids while decoding, then done (or an error)."""

    kind: str  # "queued" | "tokens" | "done" | "error"
    position: int = 0
    tokens: list[int] = field(default_factory=list)
    error: BaseException | None = None
    reason: str = ""
    rid: int = 0  # the request it belongs to (several requests may share one output queue)


_ids = itertools.count(1)


class Request:
    """One generation: prompt ids, variant (adapter name or None for the base model), sampling and its own RNG."""

    def __init__(
        self,
        prompt_ids: Sequence[int],
        adapter: str | None,
        sampling: SamplingConfig,
        eos_ids: Sequence[int],
        generator=None,
        stop_check: Callable[[list[int]], bool] | None = None,
        out: "queue.Queue[Event] | None" = None,
    ):
        self.id = next(_ids)
        self.prompt_ids = list(prompt_ids)
        self.adapter = adapter
        self.sampling = sampling
        self.eos_ids = set(int(e) for e in eos_ids)
        self.generator = generator if generator is not None else os_generator(sampling.seed)
        self.stop_check = stop_check
        self.out: queue.Queue[Event] = out if out is not None else queue.Queue()
        self.cancelled = threading.Event()
        self.generated: list[int] = []
        self.created = time.perf_counter()
        self.started: float | None = None  # when its prefill ran
        self.finished = threading.Event()
        self.background = False  # batch work (the battle pool): runs only in rows no visitor is waiting for


class Ticket:
    """The caller's handle: iterate ``events()``; closing that iterator (from any thread) cancels the request."""

    def __init__(self, scheduler: "Scheduler", request: Request):
        self.scheduler, self.request = scheduler, request

    def position(self) -> int:
        return self.scheduler.position(self.request)

    def cancel(self) -> None:
        self.scheduler.cancel(self.request)

    def events(self, poll_s: float = 0.25) -> Iterator[Event]:
        """Yield events until done. While waiting, a 'queued' event reports the position when it changes."""
        r = self.request
        last_pos = None
        try:
            while True:
                try:
                    ev = r.out.get(timeout=poll_s)
                except queue.Empty:
                    if r.started is None:
                        pos = self.position()
                        if pos != last_pos and pos > 0:
                            last_pos = pos
                            yield Event("queued", position=pos)
                    continue
                yield ev
                if ev.kind in ("done", "error"):
                    return
        finally:
            if not r.finished.is_set():
                self.cancel()  # the caller went away: free the row


class Scheduler:
    """Owns the model (through an AdapterBank) on one worker thread; everything else talks to it through queues."""

    def __init__(self, bank, config: SchedulerConfig | None = None):
        self.bank = bank
        self.config = config or SchedulerConfig()
        self._cond = threading.Condition()
        self._waiting: list[Request] = []
        self._background: list[Request] = []  # outside the bound: never makes a visitor 'busy'
        self._thread: threading.Thread | None = None
        self._stop = False
        self.steps = 0  # decode steps run (for tests and the bench)
        self.max_rows_seen = 0
        self._active_count = 0
        self._calls: list[Callable[[], None]] = []  # work for the worker thread between steps (graph capture)
        self.prefills = 0

    # ---- caller side (any thread; never blocks on the model) -------------------------------------------------
    @property
    def max_batch(self) -> int:
        if self.config.max_batch:
            return self.config.max_batch
        return 32 if getattr(self.bank.base.device, "type", "cpu") == "cuda" else 8

    def submit(self, request: Request, block: bool = False) -> Ticket:
        """Queue a request. Over the bound: SchedulerBusy, or (block=True, for batch jobs) wait for room."""
        if self.static_kv and len(request.prompt_ids) + 1 > self.config.max_len:
            raise ValueError(
                f"The prompt is too long for this server: {len(request.prompt_ids)} tokens, at most "
                f"{self.config.max_len - 1}."
            )
        with self._cond:
            if request.background:
                self._background.append(request)
                self._ensure_worker()
                self._cond.notify_all()
                return Ticket(self, request)
            while len(self._waiting) >= self.config.max_waiting:
                if not block:
                    raise SchedulerBusy(
                        f"The model is busy ({len(self._waiting)} requests are waiting); please try again in a minute."
                    )
                self._cond.wait(0.5)
            self._waiting.append(request)
            self._ensure_worker()
            self._cond.notify_all()
        return Ticket(self, request)

    def position(self, request: Request) -> int:
        """1 = next to start; 0 = running or finished."""
        with self._cond:
            try:
                return self._waiting.index(request) + 1
            except ValueError:
                return 0

    def cancel(self, request: Request) -> None:
        request.cancelled.set()
        with self._cond:
            for q in (self._waiting, self._background):
                if request in q:
                    q.remove(request)
                    request.finished.set()
                    self._cond.notify_all()

    def load(self) -> dict:
        with self._cond:
            return {"waiting": len(self._waiting), "running": self._active_count, "max_batch": self.max_batch}

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _ensure_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="generation-scheduler", daemon=True)
            self._thread.start()

    # ---- worker side -----------------------------------------------------------------------------------------
    def _run(self) -> None:
        import torch

        batch = self._new_batch()
        with torch.inference_mode():
            while True:
                with self._cond:
                    while (
                        not self._stop
                        and not self._waiting
                        and not self._background
                        and not batch.rows
                        and not self._calls
                    ):
                        self._cond.wait(1.0)
                    if self._stop:
                        break
                    calls, self._calls = (self._calls, []) if not batch.rows else ([], self._calls)
                    room = self.max_batch - len(batch.rows)
                    joiners = [] if self._hold_joiners(batch, room) else self._waiting[: max(0, room)]
                    del self._waiting[: len(joiners)]
                    if (
                        not self._waiting
                    ):  # background work fills rows only while no visitor waits; half of them while visitors run
                        n_bg = sum(r.background for r in batch.rows)
                        fg = len(batch.rows) - n_bg + len(joiners)
                        # idle: all but a few rows (kept free so an arriving visitor joins at the next step)
                        cap = self.max_batch - max(1, self.max_batch // 8) if fg == 0 else self.max_batch // 2
                        take = max(0, min(room - len(joiners), cap - n_bg))
                        joiners += self._background[:take]
                        del self._background[:take]
                    if joiners:
                        self._cond.notify_all()  # submitters blocked on the bound
                for call in calls:  # only while no row runs: the calls may use the batch buffers
                    call()
                if calls:
                    batch = self._new_batch()
                joiners = self._load_adapters([r for r in joiners if not r.cancelled.is_set()])
                if joiners:
                    try:
                        self._prefill(batch, joiners)
                    except Exception as exc:  # a failed prefill fails the joiners only; running rows carry on
                        log.exception("prefill failed")
                        for r in joiners:
                            self._finish(r, Event("error", error=exc))
                        joiners = []
                try:
                    self._drop_finished(batch)
                    if batch.rows:
                        self._decode_step(batch)
                        self._drop_finished(batch)
                except Exception as exc:  # a failed forward fails the rows in it, never the worker
                    log.exception("generation step failed")
                    for r in batch.rows + joiners:
                        self._finish(r, Event("error", error=exc))
                    batch = self._new_batch()
                with self._cond:
                    self._active_count = len(batch.rows)
                    self.max_rows_seen = max(self.max_rows_seen, len(batch.rows))

    def _hold_joiners(self, batch, room: int) -> bool:
        """Let a few newcomers wait (join_wait_ms) so that more of them share one prefill; never when idle."""
        w = self.config.join_wait_ms
        if w < 0:
            w = 30.0 if getattr(self.bank.base.device, "type", "cpu") == "cuda" else 0.0
        if not w or not batch.rows or not self._waiting or len(self._waiting) >= min(room, self.config.join_min):
            return False
        return (time.perf_counter() - self._waiting[0].created) * 1000 < w

    def on_worker(self, fn: Callable[[], object], timeout: float = 600.0):
        """Run fn on the worker thread while no row is decoding; returns its result (or raises its error)."""
        done, box = threading.Event(), {}

        def call():
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed back to the caller below
                box["error"] = exc
            finally:
                done.set()

        with self._cond:
            self._calls.append(call)
            self._ensure_worker()
            self._cond.notify_all()
        if not done.wait(timeout):
            raise TimeoutError("the generation worker did not get to the call in time")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def capture_graphs(self) -> int:
        """CUDA: capture the decode graph of every row bucket at the first width now (~0.1 s each), so the first
        visitors of each batch size do not pay for it. Returns how many graphs exist; 0 where graphs do not apply."""
        if not (self.static_kv and self.config.cuda_graph and getattr(self.bank.base.device, "type", "") == "cuda"):
            return 0

        def capture():
            import torch

            st = self._new_batch()
            with torch.inference_mode():
                for R in st.row_buckets:
                    st.warm_graph(R, st.buckets[0])
            st.reset()
            return len(st.graphs)

        return self.on_worker(capture)

    @property
    def static_kv(self) -> bool:
        kv = self.config.kv
        return kv == "static" or (kv == "auto" and getattr(self.bank.base.device, "type", "cpu") == "cuda")

    def _new_batch(self):
        if self.static_kv:
            if getattr(self, "_static", None) is None:  # allocated once: the CUDA graph points at these buffers
                self._static = _StaticBatch(self, self.max_batch, self.config.max_len)
            self._static.reset()
            return self._static
        return _Batch()

    def _finish(self, r: Request, ev: Event) -> None:
        if not r.finished.is_set():
            r.finished.set()
            ev.rid = r.id
            r.out.put(ev)

    def _load_adapters(self, joiners: list[Request]) -> list[Request]:
        import torch

        with torch.inference_mode(
            False
        ):  # adapter weights must be normal tensors: PEFT toggles requires_grad on them later
            return self._load_adapters_now(joiners)

    def _load_adapters_now(self, joiners: list[Request]) -> list[Request]:
        ok = []
        for r in joiners:
            if r.adapter is None:
                ok.append(r)
                continue
            try:
                self.bank.load(r.adapter)  # on the worker thread, between steps: no other row is mid-forward
                ok.append(r)
            except Exception as exc:
                self._finish(r, Event("error", error=exc))
        return ok

    def _forward(self, adapters: list[str | None], **kw):
        pm = self.bank.peft_model
        if pm is None:
            return self.bank.base(**kw)
        return pm(**kw, adapter_names=[a or BASE_ADAPTER for a in adapters])

    def _prefill(self, batch: "_Batch", joiners: list[Request]) -> None:
        import torch
        from transformers import DynamicCache

        dev = self.bank.base.device
        n = max(len(r.prompt_ids) for r in joiners)
        pad = 0
        ids = torch.full((len(joiners), n), pad, dtype=torch.long)
        mask = torch.zeros((len(joiners), n), dtype=torch.long)
        for i, r in enumerate(joiners):
            ids[i, n - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            mask[i, n - len(r.prompt_ids) :] = 1
            r.started = time.perf_counter()
        ids, mask = ids.to(dev), mask.to(dev)
        self.prefills += 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        out = self._forward(
            [r.adapter for r in joiners],
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            past_key_values=cache,
            cache_position=torch.arange(n, device=dev),
            use_cache=True,
            logits_to_keep=1,
        )
        tokens = sample_next(out.logits[:, -1, :], joiners)
        batch.merge(out.past_key_values, mask, joiners, [len(r.prompt_ids) for r in joiners])
        self._emit(joiners, tokens)

    def _decode_step(self, batch: "_Batch") -> None:
        import torch

        if isinstance(batch, _StaticBatch):
            logits = batch.decode()
            self.steps += 1
            t0 = time.perf_counter()
            self._emit(batch.rows, sample_next(logits, batch.rows))
            if batch.profile:
                batch.timings["sample_emit"] = batch.timings.get("sample_emit", 0.0) + time.perf_counter() - t0
            return
        dev = self.bank.base.device
        rows = batch.rows
        ids = torch.tensor([[r.generated[-1]] for r in rows], dtype=torch.long, device=dev)
        pos = torch.tensor([[p] for p in batch.n_cached], dtype=torch.long, device=dev)
        mask = torch.cat([batch.mask, torch.ones((len(rows), 1), dtype=batch.mask.dtype, device=dev)], dim=1)
        T = batch.mask.shape[1]
        out = self._forward(
            [r.adapter for r in rows],
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            past_key_values=batch.cache,
            cache_position=torch.arange(T, T + 1, device=dev),
            use_cache=True,
        )
        batch.cache, batch.mask = out.past_key_values, mask
        batch.n_cached = [p + 1 for p in batch.n_cached]
        self.steps += 1
        self._emit(rows, sample_next(out.logits[:, -1, :], rows))

    def _emit(self, rows: list[Request], tokens: list[int]) -> None:
        every = 8
        for r, t in zip(rows, tokens):
            if r.finished.is_set():
                continue
            r.generated.append(t)
            n = len(r.generated)
            if t in r.eos_ids:
                self._finish(r, Event("done", reason="eos"))
            elif n >= r.sampling.max_new_tokens:
                r.out.put(Event("tokens", tokens=[t], rid=r.id))
                self._finish(r, Event("done", reason="length"))
            else:
                r.out.put(Event("tokens", tokens=[t], rid=r.id))
                if r.stop_check is not None and n >= 60 and n % every == 0 and r.stop_check(r.generated):
                    self._finish(r, Event("done", reason="long_enough"))

    def _drop_finished(self, batch: "_Batch") -> None:
        for r in batch.rows:
            if r.cancelled.is_set():
                self._finish(r, Event("error", error=RequestCancelled("The request was cancelled.")))
        keep = [i for i, r in enumerate(batch.rows) if not r.finished.is_set()]
        if len(keep) != len(batch.rows):
            batch.keep(keep)


class _Batch:
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


class _SlotLayer:
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


class _StaticBatch:
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
            _SlotLayer(
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
        self.profile = os.environ.get("REPLY_ARENA_PROFILE") == "1"
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
