"""What callers hand the generation scheduler and what they read back: requests, events, errors, per-request RNGs."""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .config import SamplingConfig

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
