"""How long an evaluation will take, said before it starts, and whether the local judge can work on the loaded model.

UI-free so it is unit-tested. The per-call times are measured points, not promises: a 2-core CPU box generated a
60-token reply in ~3-4 s on the embedded model (bench/cpu_generate.py) and its local judge answered 18 calls in ~12 min
(~40 s a call: a long prompt and up to 256 new tokens); on a GPU both are roughly ten times faster; Claude answers in a
few seconds, four calls at a time (EvalConfig.workers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CLAUDE_WORKERS = 4
LOCAL_JUDGE_MIN_PARAMS = 1_000_000_000  # below ~1B parameters a model does not keep to the judge's answer format


@dataclass(frozen=True)
class Speeds:
    reply_s: float  # one generated reply
    judge_s: float  # one judge call, already divided by the parallel workers


def speeds(device: str, judge_kind: str) -> Speeds:
    gpu = str(device).startswith("cuda")
    reply = 0.4 if gpu else 4.0
    if judge_kind == "local":
        return Speeds(reply, 4.0 if gpu else 40.0)
    return Speeds(reply, 4.0 / CLAUDE_WORKERS)


def n_pairs(n_adapters: int, include_rag: bool) -> int:
    """Each adapter vs Base (and vs RAG few-shot), and RAG few-shot vs Base: as evaluation.run.plan_pairs."""
    return n_adapters * (2 if include_rag else 1) + (1 if include_rag else 0)


def judge_calls(n_tweets: int, n_variants: int, pairs: int) -> int:
    """One 1-10 score per reply plus two calls per compared pair (positions swapped)."""
    return n_tweets * n_variants + 2 * n_tweets * pairs


def duration_words(seconds: float) -> str:
    if seconds < 90:
        return f"about {max(10, int(round(seconds / 10.0)) * 10)} s"
    minutes = int(math.ceil(seconds / 60.0))
    if minutes < 90:
        return f"about {minutes} min"
    h, m = divmod(int(round(minutes / 5.0)) * 5, 60)
    return f"about {h} h" + (f" {m} min" if m else "")


def estimate(n_tweets: int, n_adapters: int, include_rag: bool, judge_kind: str, device: str) -> tuple[float, str]:
    """(seconds, one sentence) for a run with nothing cached yet."""
    variants = 1 + n_adapters + (1 if include_rag else 0)
    pairs = n_pairs(n_adapters, include_rag)
    calls = judge_calls(n_tweets, variants, pairs)
    sp = speeds(device, judge_kind)
    secs = n_tweets * variants * sp.reply_s + calls * sp.judge_s
    judge = "the local judge" if judge_kind == "local" else "Claude"
    where = "GPU" if str(device).startswith("cuda") else "CPU"
    text = (
        f"Estimated time: {duration_words(secs)} ({n_tweets} tweets × {variants} variants = {n_tweets * variants} "
        "replies, "
        f"{calls} judge calls with {judge} on {where}; cached replies and answers are free)."
    )
    if secs > 1800:
        text += (
            " Lower the tweet limit"
            + (" or use the Claude judge" if judge_kind == "local" else "")
            + " for a quicker run."
        )
    return secs, text


def local_judge_problem(n_params: int | None, model_name: str) -> str | None:
    """A plain sentence when the loaded model is too small to judge (its answers would not parse), else None."""
    if n_params is None or n_params >= LOCAL_JUDGE_MIN_PARAMS:
        return None
    return (
        f"The local judge is unavailable on this model ({model_name}, {n_params / 1e6:.0f}M parameters): a model this "
        "small "
        "does not answer in the judge's format, so most answers would not parse. Set ANTHROPIC_API_KEY for the Claude "
        "judge, or start the app with a base model of at least 1B parameters (e.g. --base-model Qwen/Qwen3-8B)."
    )
