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

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .kv_batch import DynamicBatch, StaticBatch
from .requests import BASE_ADAPTER, Event, Request, RequestCancelled, SchedulerBusy, os_generator
from .sampling import sample_next

__all__ = [
    "BASE_ADAPTER",
    "Event",
    "Request",
    "RequestCancelled",
    "Scheduler",
    "SchedulerBusy",
    "SchedulerConfig",
    "Ticket",
    "os_generator",
    "sample_next",
]

log = logging.getLogger(__name__)


@dataclass
class SchedulerConfig:
    """Batching limits. Defaults: 32 rows fill an H200's decode step (~3.5 ms weight read) well; 8 on a CPU. The app's
    values come from context.Settings (REPLY_ARENA_MAX_WAITING, REPLY_ARENA_KV, REPLY_ARENA_CUDA_GRAPH,
    REPLY_ARENA_PROFILE); nothing here reads the environment."""

    max_batch: int = field(default=0, metadata={"help": "rows decoded together; 0 = 32 on CUDA, 8 on CPU"})
    max_waiting: int = field(
        default=64,
        metadata={"help": "requests waiting beyond this get a 'busy, try again' message"},
    )
    long_reply_chars: int = field(
        default=300, metadata={"help": "stop a row once its answer is past this many characters"}
    )
    kv: str = field(
        default="auto",
        metadata={
            "help": "auto | static | dynamic: static = fixed [rows, L] KV slots (CUDA default; decode step "
            "captured as one CUDA graph), dynamic = growing left-padded cache (CPU default)"
        },
    )
    max_len: int = field(
        default=1536, metadata={"help": "static KV: columns per row (prompt + reply must fit; rows past it end)"}
    )
    cuda_graph: bool = field(
        default=True,
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
    profile: bool = field(
        default=False, metadata={"help": "time each static decode step's phases (synchronizes the GPU: bench only)"}
    )


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
                self._static = StaticBatch(self, self.max_batch, self.config.max_len)
            self._static.reset()
            return self._static
        return DynamicBatch()

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

    def _prefill(self, batch: "DynamicBatch", joiners: list[Request]) -> None:
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

    def _decode_step(self, batch: "DynamicBatch") -> None:
        import torch

        if isinstance(batch, StaticBatch):
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

    def _drop_finished(self, batch: "DynamicBatch") -> None:
        for r in batch.rows:
            if r.cancelled.is_set():
                self._finish(r, Event("error", error=RequestCancelled("The request was cancelled.")))
        keep = [i for i, r in enumerate(batch.rows) if not r.finished.is_set()]
        if len(keep) != len(batch.rows):
            batch.keep(keep)
