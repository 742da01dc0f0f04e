"""Per-row filter rules: boundaries, URL variants, language."""

from __future__ import annotations

import pytest

from training.data.filters import FilterConfig, check_pair, guess_language

from .sample_data import good

# ------------------------------------------------------------------ per-row rules


def test_good_pair_passes() -> None:
    assert check_pair(good()) is None


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"reply": "x" * 29}, "too_short"),
        ({"reply": "x" * 30}, None),
        ({"reply": "   " + "x" * 29 + "  "}, "too_short"),  # surrounding whitespace does not count
        ({"reply": "x" * 280}, None),
        ({"reply": "x" * 281}, "too_long"),
        ({"time_diff_seconds": 299}, "too_early"),
        ({"time_diff_seconds": 300}, None),
        ({"time_diff_seconds": None}, None),  # unknown is not early: the rule is skipped (the funnel counts it)
        ({"author_followers": 499}, "low_followers"),
        ({"author_followers": 500}, None),
        ({"author_followers": 100_000}, None),
        ({"author_followers": 100_001}, "high_followers"),
        ({"author_followers": None}, "low_followers"),
        ({"likes": 4}, "low_likes"),
        ({"likes": 5}, None),
        ({"has_media": True}, "has_media"),
        ({"has_url": True}, "has_url"),  # flag alone
        ({"lang": "es"}, "wrong_language"),
        ({"lang": "en-GB"}, None),
        ({"reply": "x" * 10 + " https://t.co/abc", "likes": 0}, "too_short"),  # first failing rule in the fixed order
    ],
)
def test_rule_boundaries(changes: dict, reason: str | None) -> None:
    got = check_pair(good(**changes))
    assert (got[0] if got else None) == reason


@pytest.mark.parametrize(
    "reply",
    [
        "Read the thread here https://t.co/AbC123xyz before replying",
        "Short version: t.co/AbC123 explains it all really",
        "Everything you need is on foo.io and it is free",
        "Full write-up at example.com/path/to/post, worth it",
        "Try www.example.org for the long version please",
        "See HTTP://EXAMPLE.NET/x for the details of the fix",
    ],
)
def test_url_variants_are_caught(reply: str) -> None:
    reason, detail = check_pair(good(reply=reply))
    assert reason == "has_url" and detail in reply


@pytest.mark.parametrize(
    "reply",
    [
        "e.g. this works fine for most people I know",
        "Node.js is fine, honestly, for this use case",
        "3.14 is close enough to pi for a pizza party",
        "ok.so what do we do now, asking for real",
    ],
)
def test_url_regex_no_false_positives(reply: str) -> None:
    assert check_pair(good(reply=reply)) is None


def test_language_field_and_heuristic() -> None:
    es = "Que no es para la gente que no tiene tiempo, pero es muy bueno"
    assert guess_language(es) == "es"
    assert guess_language("This is the one thing that you have to try with your team") == "en"
    assert guess_language("ok 👍") is None
    assert check_pair(good(lang=None, reply=es))[0] == "wrong_language"
    assert check_pair(good(lang="und", reply="This is the one thing that you have to try")) is None
    assert (
        check_pair(good(lang=None, reply="Totally agree, brilliant stuff, cheers mate")) is None
    )  # no clear guess → passes
    assert check_pair(good(lang="es"), FilterConfig(languages=None)) is None
    assert check_pair(good(lang=None, reply=es), FilterConfig(guess_missing_language=False)) is None
