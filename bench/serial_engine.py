"""Today's Engine before the scheduler (main at 2391038), verbatim except absolute imports and this docstring, so
bench/gpu_serve.py measures the serial path (one RLock around every generation) in the same run as the scheduler.
Not used by the app."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Sequence

from bench.fastgen import cuda_generate_kwargs, pad_multiple
from common.text import validate_tweet
from generation.adapters import AdapterBank
from generation.chat import (
    base_messages,
    clean_reply,
    end_of_turn_ids,
    render_prompt,
    split_thinking,
    supports_thinking,
)
from generation.config import SamplingConfig, default_sampling
from generation.loader import LoadedModel
from generation.prompts import SYSTEM_PROMPT, build_fewshot_messages

BASE, RAG, LORA_PREFIX = "base", "rag", "lora:"


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


def adapter_name(variant: str) -> str | None:
    return variant[len(LORA_PREFIX) :] if variant.startswith(LORA_PREFIX) else None


class _Cancel:
    """A stopping criterion flipped when a stream's consumer goes away, so the worker thread ends promptly."""

    def __init__(self):
        self.flag = threading.Event()

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.flag.is_set(), dtype=torch.bool, device=input_ids.device)


class _ReplyLongEnough:
    """Stop once the answer (outside any think block) is past the tweet limit: it will be cut to 280 anyway."""

    def __init__(self, tokenizer, n_prompt: int, limit: int = 300, every: int = 8):
        self.tok, self.n_prompt, self.limit, self.every = tokenizer, n_prompt, limit, every

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        n_new = input_ids.shape[1] - self.n_prompt
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if n_new < 60 or n_new % self.every:  # 60 tokens can't exceed 280 chars often; check rarely
            return done
        for i, row in enumerate(input_ids[:, self.n_prompt :]):
            text = self.tok.decode(row, skip_special_tokens=True)
            if "<think>" in text and "</think>" not in text:
                continue
            done[i] = len(split_thinking(text)[1].strip()) > self.limit
        return done


class Engine:
    def __init__(
        self,
        loaded: LoadedModel,
        adapters_dir,
        retriever: Callable[[str], list] | None = None,
        system_prompt: str = SYSTEM_PROMPT,
    ):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.bank = AdapterBank(loaded.model, loaded.name, adapters_dir)
        self.retriever = retriever
        self.system_prompt = system_prompt
        self.lock = threading.RLock()
        self.eot_ids = end_of_turn_ids(self.tokenizer)

    def warm_up(self) -> float:
        """One 2-token generation at start-up: the first forward pays for kernel selection and allocations (~1 s on
        the CPU), which would otherwise land on the first visitor's reply. Returns the seconds spent."""
        import torch

        t0 = time.perf_counter()
        enc = self._encode([render_prompt(self.tokenizer, base_messages("warm up"), False)])
        with self.lock, torch.inference_mode():
            self.bank.base.generate(**enc, max_new_tokens=2, do_sample=False, pad_token_id=self.tokenizer.pad_token_id)
        return time.perf_counter() - t0

    # ---- what can be generated -------------------------------------------------------------------------------
    @property
    def supports_thinking(self) -> bool:
        return supports_thinking(self.tokenizer)

    def variants(self) -> list[str]:
        out = [BASE] + ([RAG] if self.retriever is not None else [])
        return out + [LORA_PREFIX + n for n in self.bank.available()]

    def default_sampling(self, thinking: bool = False) -> SamplingConfig:
        return default_sampling(thinking and self.supports_thinking, small_model=self.loaded.embedded)

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
    def _gen_kwargs(self, s: SamplingConfig) -> dict:
        kw = dict(
            max_new_tokens=int(s.max_new_tokens), eos_token_id=self.eot_ids, pad_token_id=self.tokenizer.pad_token_id
        )
        if s.do_sample and s.temperature > 0:
            kw.update(do_sample=True, temperature=float(s.temperature), top_p=float(s.top_p), top_k=int(s.top_k))
            if s.min_p and s.min_p > 0:
                kw["min_p"] = float(s.min_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if s.repetition_penalty and s.repetition_penalty != 1.0:
            kw["repetition_penalty"] = float(s.repetition_penalty)
        return {**kw, **cuda_generate_kwargs(self.bank.base)}

    def _encode(self, prompts: Sequence[str]):
        tok = self.tokenizer
        side = tok.padding_side
        tok.padding_side = "left"  # decoder-only batches must be left-padded so new tokens line up
        try:
            enc = tok(
                list(prompts),
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
                pad_to_multiple_of=pad_multiple(self.bank.base),
            )
        finally:
            tok.padding_side = side
        return enc.to(self.bank.base.device)

    def stream(
        self, tweet: str, variant: str, sampling: SamplingConfig | None = None, thinking: bool = False
    ) -> Iterator[StreamEvent]:
        """Yield the reply as it grows; the last event has done=True and the full result."""
        import torch
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        tweet = validate_tweet(tweet)
        thinking = thinking and self.supports_thinking
        s = sampling or self.default_sampling(thinking)
        messages, retrieved = self.messages_for(tweet, variant)
        prompt = render_prompt(self.tokenizer, messages, thinking)
        with self.lock:
            enc = self._encode([prompt])
            streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
            cancel = _Cancel()
            long_enough = _ReplyLongEnough(self.tokenizer, int(enc["input_ids"].shape[1]))
            holder: dict = {}

            def work(ctx):
                try:
                    with ctx as model, torch.inference_mode():
                        holder["out"] = model.generate(
                            **enc,
                            streamer=streamer,
                            stopping_criteria=StoppingCriteriaList([cancel, long_enough]),
                            **self._gen_kwargs(s),
                        )
                except Exception as exc:  # surfaced to the consumer below
                    holder["error"] = exc
                    streamer.end()

            if s.seed is not None:
                torch.manual_seed(int(s.seed))
            ctx = self.bank.activate(adapter_name(variant))
            t0 = time.perf_counter()
            th = threading.Thread(target=work, args=(ctx,), daemon=True)
            th.start()
            text, ttft = "", 0.0
            try:
                for chunk in streamer:
                    if chunk and not ttft:
                        ttft = time.perf_counter() - t0
                    text += chunk
                    think, answer = split_thinking(text)
                    yield StreamEvent(variant, clean_reply(answer) if answer.strip() else "", think)
            finally:
                cancel.flag.set()
                th.join()
            if "error" in holder:
                raise holder["error"]
            seconds = time.perf_counter() - t0
            n_prompt = int(enc["input_ids"].shape[1])
            out = holder.get("out")
            new = 0 if out is None else int((out[0, n_prompt:] != self.tokenizer.pad_token_id).sum())
        think, answer = split_thinking(text)
        result = GenerationResult(
            variant,
            clean_reply(answer),
            think,
            text,
            n_prompt,
            new,
            seconds,
            ttft or seconds,
            retrieved,
            {**s.to_dict(), "thinking": thinking},
        )
        yield StreamEvent(variant, result.reply, think, True, result)

    def generate(
        self, tweet: str, variant: str, sampling: SamplingConfig | None = None, thinking: bool = False
    ) -> GenerationResult:
        last = None
        for last in self.stream(tweet, variant, sampling, thinking):
            pass
        return last.result

    def generate_batch(
        self,
        tweets: Sequence[str],
        variant: str,
        sampling: SamplingConfig | None = None,
        thinking: bool = False,
        batch_size: int = 8,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[GenerationResult]:
        """Batched (left-padded) generation for evaluation; results in input order."""
        import torch
        from transformers import StoppingCriteriaList

        thinking = thinking and self.supports_thinking
        s = sampling or self.default_sampling(thinking)
        items = [validate_tweet(t) for t in tweets]
        results: list[GenerationResult] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            built = [self.messages_for(t, variant) for t in chunk]
            prompts = [render_prompt(self.tokenizer, m, thinking) for m, _ in built]
            with self.lock:
                enc = self._encode(prompts)
                if s.seed is not None:
                    torch.manual_seed(int(s.seed) + start)
                t0 = time.perf_counter()
                with self.bank.activate(adapter_name(variant)) as model, torch.inference_mode():
                    out = model.generate(
                        **enc,
                        stopping_criteria=StoppingCriteriaList(
                            [_ReplyLongEnough(self.tokenizer, enc["input_ids"].shape[1])]
                        ),
                        **self._gen_kwargs(s),
                    )
                seconds = time.perf_counter() - t0
            n_prompt = enc["input_ids"].shape[1]
            for i, (_, retrieved) in enumerate(built):
                ids = out[i, n_prompt:]
                new = int((ids != self.tokenizer.pad_token_id).sum())
                raw = self.tokenizer.decode(ids, skip_special_tokens=True)
                think, answer = split_thinking(raw)
                n_real = int(enc["attention_mask"][i].sum())
                results.append(
                    GenerationResult(
                        variant,
                        clean_reply(answer),
                        think,
                        raw,
                        n_real,
                        new,
                        seconds / len(chunk),
                        0.0,
                        retrieved,
                        {**s.to_dict(), "thinking": thinking, "batch_size": len(chunk)},
                    )
                )
            if progress:
                progress(min(start + batch_size, len(items)), len(items))
        return results
