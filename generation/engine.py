"""One loaded base model serving every variant: base (adapters off), RAG (few-shot prompt), and each LoRA adapter.

Variants are named "base", "rag" and "lora:<adapter>" everywhere (Generate, Arena, the vote store, the leaderboard).
Every generation goes through one Scheduler (scheduler.py): a bounded queue and a worker thread that owns the model and
decodes all waiting requests together (continuous batching, mixed adapters per row), so no lock is held here at all.
"""

from __future__ import annotations

import queue
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Sequence

from common.text import validate_tweet

from .adapters import AdapterBank
from .chat import base_messages, clean_reply, end_of_turn_ids, render_prompt, split_thinking, supports_thinking
from .config import SamplingConfig, default_sampling
from .errors import AdapterError
from .loader import LoadedModel
from .prompts import SYSTEM_PROMPT, build_fewshot_messages
from .scheduler import Event as SchedEvent
from .scheduler import Request, Scheduler, SchedulerConfig, os_generator
from .variants import BASE, RAG, adapter_name, lora_variant


@dataclass
class GenerationResult:
    variant: str
    reply: str
    thinking: str = ""
    raw: str = ""
    prompt_tokens: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    ttft: float = 0.0
    retrieved: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def from_text(
        cls,
        variant: str,
        raw: str,
        prompt_tokens: int,
        new_tokens: int,
        seconds: float,
        ttft: float,
        retrieved: list,
        settings: dict,
    ) -> GenerationResult:
        """The finished reply from the model's raw text: the thinking split off, the answer cleaned for a tweet."""
        think, answer = split_thinking(raw)
        return cls(
            variant, clean_reply(answer), think, raw, prompt_tokens, new_tokens, seconds, ttft, retrieved, settings
        )

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["retrieved"] = [asdict(r) if hasattr(r, "__dataclass_fields__") else r for r in self.retrieved]
        d["tokens_per_s"] = self.tokens_per_s
        return d


@dataclass
class StreamEvent:
    variant: str
    reply: str
    thinking: str
    done: bool = False
    result: GenerationResult | None = None
    queued: int = 0  # >0: still waiting for the model, at this position in the queue
    error: str | None = None  # stream_many(errors="event"): this variant failed with this sentence

    @classmethod
    def of(
        cls,
        variant: str,
        text: str = "",
        result: GenerationResult | None = None,
        error: str | None = None,
        queued: int = 0,
    ) -> StreamEvent:
        """One variant as its caller sees it: failed (`error`), finished (`result`), or else the reply so far from the
        raw `text` (thinking split off; the answer shows once it is more than white space)."""
        if error is not None:
            return cls(variant, "", "", True, None, error=error)
        if result is not None:
            return cls(variant, result.reply, result.thinking, True, result)
        think, answer = split_thinking(text)
        return cls(variant, clean_reply(answer) if answer.strip() else "", think, queued=queued)


class SingleReply:
    """One reply from `stream_many`, which every backend (in-process Engine, OpenAI-compatible server) provides."""

    def stream(
        self, tweet: str, variant: str, sampling: SamplingConfig | None = None, thinking: bool = False
    ) -> Iterator[StreamEvent]:
        """Yield the reply as it grows; the last event has done=True and the full result."""
        for evs in self.stream_many(tweet, [variant], sampling, thinking):
            yield evs[0]

    def generate(
        self, tweet: str, variant: str, sampling: SamplingConfig | None = None, thinking: bool = False
    ) -> GenerationResult:
        last = None
        for last in self.stream(tweet, variant, sampling, thinking):
            pass
        return last.result


class Engine(SingleReply):
    def __init__(
        self,
        loaded: LoadedModel,
        adapters_dir,
        retriever: Callable[[str], list] | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        scheduler: SchedulerConfig | None = None,
        max_new_tokens: int | None = None,
    ):
        self.loaded = loaded
        self.max_new_tokens = max_new_tokens  # reply budget for the default sampling; None = the card default
        self.tokenizer = loaded.tokenizer
        self.bank = AdapterBank(loaded.model, loaded.name, adapters_dir)
        self.retriever = retriever
        self.system_prompt = system_prompt
        self.eot_ids = end_of_turn_ids(self.tokenizer)
        self.scheduler = Scheduler(self.bank, scheduler)

    def close(self) -> None:
        self.scheduler.close()

    def warm_up(self) -> float:
        """One 2-token generation at start-up: the first forward pays for kernel selection and allocations (~1 s on
        the CPU), which would otherwise land on the first visitor's reply. On CUDA the decode graphs of every batch
        size are captured too. Returns the seconds spent."""
        t0 = time.perf_counter()
        self.generate("warm up", BASE, SamplingConfig(do_sample=False, temperature=0.0, max_new_tokens=2))
        self.scheduler.capture_graphs()
        return time.perf_counter() - t0

    # ---- what can be generated -------------------------------------------------------------------------------
    @property
    def supports_thinking(self) -> bool:
        return supports_thinking(self.tokenizer)

    def variants(self) -> list[str]:
        out = [BASE] + ([RAG] if self.retriever is not None else [])
        return out + [lora_variant(n) for n in self.bank.available()]

    def default_sampling(self, thinking: bool = False) -> SamplingConfig:
        return default_sampling(
            thinking and self.supports_thinking, small_model=self.loaded.embedded, max_new_tokens=self.max_new_tokens
        )

    def messages_for(self, tweet: str, variant: str) -> tuple[list[dict], list]:
        if variant == RAG:
            if self.retriever is None:
                raise ValueError("The RAG variant needs a retrieval index; none is loaded.")

            examples = self.retriever(tweet)
            return build_fewshot_messages(tweet, examples, self.system_prompt), examples
        if variant != BASE and adapter_name(variant) is None:
            raise ValueError(f"Unknown variant {variant!r}; choose one of: {', '.join(self.variants())}.")
        return base_messages(tweet, self.system_prompt), []

    # ---- generation ------------------------------------------------------------------------------------------
    def _request(
        self, tweet: str, variant: str, s: SamplingConfig, thinking: bool, generator=None, out=None
    ) -> tuple[Request, list]:
        """Build one scheduler request; the prompt is encoded here (caller's thread), the model runs on the worker."""
        messages, retrieved = self.messages_for(tweet, variant)
        ids = self.tokenizer(render_prompt(self.tokenizer, messages, thinking), add_special_tokens=False)["input_ids"]
        name = adapter_name(variant)
        if name is not None and name not in self.bank.loaded and name not in self.bank.available():
            raise AdapterError(
                f"No adapter named {name!r} in {self.bank.adapters_dir}; available: "
                f"{', '.join(self.bank.available()) or 'none'}."
            )
        return Request(ids, name, s, self.eot_ids, generator, self._long_enough, out), retrieved

    def generate_messages(
        self,
        messages: list[dict],
        sampling: SamplingConfig,
        seed: int | None = None,
        thinking: bool = False,
        background: bool = True,
    ) -> tuple[str, int, int]:
        """Any chat (the local judge) through the scheduler with the base model: (raw text, prompt tokens, new tokens).
        A seed makes it reproducible through its own generator, never the process-wide RNG."""
        ids = self.tokenizer(render_prompt(self.tokenizer, messages, thinking), add_special_tokens=False)["input_ids"]
        req = Request(ids, None, sampling, self.eot_ids, os_generator(seed))
        req.background = background
        ticket = self.scheduler.submit(req, block=True)
        for ev in ticket.events():
            if ev.kind == "error":
                raise ev.error
        return self.tokenizer.decode(req.generated, skip_special_tokens=True), len(ids), len(req.generated)

    def _long_enough(self, tokens: list[int]) -> bool:
        """Stop once the answer (outside any think block) is past the tweet limit: it will be cut to 280 anyway."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        if "<think>" in text and "</think>" not in text:
            return False
        return len(split_thinking(text)[1].strip()) > self.scheduler.config.long_reply_chars

    def stream_many(
        self,
        tweet: str,
        variants: Sequence[str],
        sampling: SamplingConfig | None = None,
        thinking: bool = False,
        private: bool = False,
        errors: str = "raise",
    ) -> Iterator[list[StreamEvent]]:
        """Generate every variant for one tweet in the same batch; yield all replies (one StreamEvent each) as they
        grow.

        `private=True` (the Arena) gives each request its own generator seeded from the OS, whatever `sampling.seed`
        says.
        Closing this iterator (a visitor leaving) cancels every request it started; no lock is held while suspended.
        errors="raise": the first failure is raised at the end; "event": a failed variant ends with StreamEvent.error
        set
        and the others carry on (the Generate tab shows each variant's own error).
        """
        tweet = validate_tweet(tweet)
        thinking = thinking and self.supports_thinking
        s = sampling or self.default_sampling(thinking)
        states: list[_Progress] = []
        tickets: list = []
        out: queue.Queue[SchedEvent] = queue.Queue()  # one queue for all of them: wake on whichever grows
        try:
            for v in variants:
                seed = None if (private or s.seed is None) else int(s.seed)
                try:
                    req, retrieved = self._request(tweet, v, s, thinking, os_generator(seed), out)
                except (ValueError, AdapterError) as exc:
                    if errors == "raise":
                        raise
                    st = _Progress(v, None, [], s, thinking)
                    st.done, st.error = True, exc
                    states.append(st)
                    tickets.append(None)
                    continue
                tickets.append(self.scheduler.submit(req))
                states.append(_Progress(v, req, retrieved, s, thinking))
        except BaseException:
            for t in tickets:
                if t is not None:
                    t.cancel()
            raise
        by_id = {st.req.id: st for st in states if st.req is not None}
        try:
            yield [st.event() for st in states]
            while not all(st.done for st in states):
                changed = False
                try:
                    ev = out.get(timeout=0.25)
                    while True:  # apply everything that is there, then yield once
                        changed |= by_id[ev.rid].apply(ev, self.tokenizer)
                        ev = out.get_nowait()
                except queue.Empty:
                    pass
                for st, t in zip(states, tickets):
                    if t is not None and not st.done and t.request.started is None:
                        pos = t.position()
                        if pos != st.queued:
                            st.queued, changed = pos, True
                if changed:
                    yield [st.event() for st in states]
        finally:
            for t in tickets:
                if t is not None and not t.request.finished.is_set():
                    t.cancel()
        for st in states:
            if st.error is not None and errors == "raise":
                raise st.error

    def generate_batch(
        self,
        tweets: Sequence[str],
        variant: str,
        sampling: SamplingConfig | None = None,
        thinking: bool = False,
        batch_size: int = 8,
        progress: Callable[[int, int], None] | None = None,
        background: bool = True,
        private: bool = False,
    ) -> list[GenerationResult]:
        """Every tweet goes through the scheduler, batched with whatever else runs; results in input order. `batch_size`
        is
        kept for callers; the scheduler's max_batch decides the real batch. background=True (Evaluate, the battle pool):
        rows no visitor waits for, so an admin job never makes visitors 'busy'. private=True: OS-seeded, whatever the
        seed."""
        thinking = thinking and self.supports_thinking
        s = sampling or self.default_sampling(thinking)
        items = [validate_tweet(t) for t in tweets]
        results: list[GenerationResult | None] = [None] * len(items)
        pending = []
        t0 = time.perf_counter()
        for i, t in enumerate(items):
            req, retrieved = self._request(
                t, variant, s, thinking, os_generator(None if (private or s.seed is None) else int(s.seed) + i)
            )
            req.background = background
            pending.append((i, self.scheduler.submit(req, block=True), retrieved))
        done = 0
        for i, ticket, retrieved in pending:
            st = _Progress(variant, ticket.request, retrieved, s, thinking)
            for ev in ticket.events():
                st.apply(ev, self.tokenizer)
            if st.error is not None:
                raise st.error
            results[i] = st.event().result
            done += 1
            if progress:
                progress(done, len(items))
        seconds = time.perf_counter() - t0
        for r in results:
            r.settings["batch_size"] = min(len(items), self.scheduler.max_batch)
            r.seconds = seconds / max(1, len(items))
        return results  # type: ignore[return-value]


class _Progress:
    """One request's reply as seen by its caller: tokens decoded to text, thinking split off, the final result."""

    def __init__(self, variant: str, req: Request | None, retrieved: list, s: SamplingConfig, thinking: bool):
        self.variant, self.req, self.retrieved, self.s, self.thinking = variant, req, retrieved, s, thinking
        self.tokens: list[int] = []
        self.text = ""
        self.done = False
        self.error: BaseException | None = None
        self.queued = 0
        self.t0 = time.perf_counter()
        self.ttft = 0.0
        self.result: GenerationResult | None = None
        self.tokenizer = None
        self.decoded = 0

    def apply(self, ev: SchedEvent, tokenizer) -> bool:
        if ev.kind == "tokens":
            if not self.ttft:
                self.ttft = time.perf_counter() - self.t0
            self.tokens += ev.tokens
            self.tokenizer = tokenizer
            self.queued = 0
            return True
        if ev.kind == "queued":
            self.queued = ev.position
            return True
        self.done = True
        if ev.kind == "error":
            self.error = ev.error
            return True
        self.text = tokenizer.decode(self.tokens, skip_special_tokens=True)
        seconds = time.perf_counter() - self.t0
        self.result = GenerationResult.from_text(
            self.variant,
            self.text,
            len(self.req.prompt_ids),
            len(self.req.generated),
            seconds,
            self.ttft or seconds,
            self.retrieved,
            {**self.s.to_dict(), "thinking": self.thinking},
        )
        return True

    def event(self) -> StreamEvent:
        msg = None
        if self.error is not None:
            msg = str(self.error).splitlines()[0][:300] if str(self.error) else type(self.error).__name__
        elif self.result is None and self.tokenizer is not None and self.decoded != len(self.tokens):
            # decode once per yield, not per token
            self.text, self.decoded = self.tokenizer.decode(self.tokens, skip_special_tokens=True), len(self.tokens)
        return StreamEvent.of(self.variant, self.text, self.result, msg, self.queued)
