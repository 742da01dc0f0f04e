from __future__ import annotations

from evaluation.estimate import duration_words, estimate, judge_calls, local_judge_problem, n_pairs
from evaluation.run import plan_pairs


def test_pair_count_matches_the_runner():
    for adapters in (0, 1, 3):
        for rag in (False, True):
            variants = ["base"] + (["rag"] if rag else []) + [f"lora:a{i}" for i in range(adapters)]
            assert n_pairs(adapters, rag) == len(plan_pairs(variants))


def test_default_cpu_local_run_is_hours_and_says_so():
    # the case: 20 tweets, base + RAG, no adapter, local judge on a 2-core CPU
    secs, text = estimate(20, 0, True, "local", "cpu")
    assert judge_calls(20, 2, 1) == 80
    assert secs == 20 * 2 * 4.0 + 80 * 40.0
    assert text.startswith(
        "Estimated time: about 56 min (20 tweets × 2 variants = 40 replies, 80 judge calls with the local judge on CPU"
    )
    secs, text = estimate(20, 1, True, "local", "cpu")
    assert (
        2 * 3600 <= secs < 3 * 3600 and "about 2 h" in text and "Lower the tweet limit or use the Claude judge" in text
    )
    secs, text = estimate(20, 1, True, "anthropic", "cuda")
    assert secs < 300 and "Claude on GPU" in text and "Lower" not in text


def test_duration_words():
    assert (
        duration_words(12) == "about 10 s"
        and duration_words(600) == "about 10 min"
        and duration_words(7500) == "about 2 h 5 min"
    )


def test_local_judge_needs_a_real_model():
    msg = local_judge_problem(135_000_000, "SmolLM2-135M-Instruct")
    assert msg and "unavailable on this model (SmolLM2-135M-Instruct, 135M parameters)" in msg
    assert local_judge_problem(8_000_000_000, "Qwen/Qwen3-8B") is None


def test_ranking_hidden_while_every_value_is_missing():
    from evaluation.report import ranking_has_data

    empty = {
        "ranking": [
            {
                "rank": 1,
                "contender": "base",
                "composite": None,
                "partial": None,
                "engagement": None,
                "win_rate": None,
                "eval_loss": None,
                "note": "no scores",
            }
        ]
    }
    assert not ranking_has_data(empty) and not ranking_has_data({})
    empty["ranking"][0]["engagement"] = 0.5
    assert ranking_has_data(empty)
