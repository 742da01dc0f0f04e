from __future__ import annotations

from training.data.filters import FilterConfig
from training.data.funnel import apply_filters
from training.data.messages import export_size_warning, import_headline, show_names
from training.data.pairs import Pair


def _pair(i: int, **kw) -> Pair:
    base = dict(
        pair_id=f"p{i}",
        tweet_id=f"t{i}",
        tweet=f"tweet number {i} about coffee",
        reply=f"a long enough reply number {i} here",
        likes=10,
        author_followers=1000,
        time_diff_seconds=None,
    )
    base.update(kw)
    return Pair(**base)


def test_missing_timestamp_skips_the_rule_and_is_counted():
    pairs = [_pair(i) for i in range(38)] + [_pair(100, time_diff_seconds=10), _pair(101, time_diff_seconds=900)]
    res = apply_filters(pairs, FilterConfig(languages=None))
    assert res.funnel.no_timestamp == 38
    assert res.funnel.dropped["too_early"] == 1  # only the one really known to be early
    assert res.funnel.n_out == 39
    assert res.funnel.to_dict()["no_timestamp"] == 38
    head = import_headline(res.funnel, "Imported 40 pairs")
    assert head.startswith("✅ Imported 40 pairs") and "38 of 40 pairs had no timestamp" in head


def test_no_check_mark_when_nothing_passes():
    res = apply_filters([_pair(i, reply="short") for i in range(3)], FilterConfig(languages=None))
    assert res.funnel.n_out == 0
    head = import_headline(res.funnel, "Imported 3 pairs")
    assert "✅" not in head and head.startswith("⚠️ 0 of 3 pairs passed the filters")


def test_show_names_hides_upload_folders():
    up = "/tmp/gradio/3f2a9c0d1e2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d/replies.csv"
    assert show_names(f"{up}: line 1: unknown format", [up]) == "replies.csv: line 1: unknown format"
    assert show_names(f"cannot read {up}") == "cannot read replies.csv"
    assert (
        show_names("/data/exports/x.jsonl: empty", []) == "/data/exports/x.jsonl: empty"
    )  # a server path stays as typed


def test_export_size_warning():
    assert "Only 3 pairs (2 train / 1 eval)" in export_size_warning(3, 2, 1) and "800–1,200" in export_size_warning(
        3, 2, 1
    )
    assert export_size_warning(900, 810, 90) == ""
    assert "eval split is empty" in export_size_warning(900, 900, 0)
