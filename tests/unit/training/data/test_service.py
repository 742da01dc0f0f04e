"""Data tab glue (training/data/service.py) on real files: the sample export, a malformed file, review navigation.

Semantic dedup uses a stub encoder (seeded random vectors; the README's six near-duplicate pairs share one) so
this stays quick; the real MiniLM path is covered by test_dedup.py and the browser test.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from training.data.export import export_dataset
from training.data.filters import FilterConfig
from training.data.importers import import_file
from training.data.review_store import ReviewStore
from training.data.service import (
    advance_after_decision,
    dataset_summary,
    export_rows,
    funnel_rows,
    import_report_markdown,
    import_to_review,
    make_filter_config,
    parse_mapping,
    progress_html,
    record_decision,
    resolve_sources,
    review_view,
    step,
    why_passed,
)

ROOT = Path(__file__).resolve().parents[4]
SAMPLE = ROOT / "assets" / "sample_pairs.jsonl"
FIXTURES = ROOT / "tests" / "fixtures"
NEAR_DUPS = [
    ("p0022", "p0162"),
    ("p0042", "p0136"),
    ("p0050", "p0053"),
    ("p0068", "p0144"),
    ("p0094", "p0145"),
    ("p0178", "p0259"),
]


class StubEncoder:
    """Deterministic unit vectors per text; the near-duplicate pairs map to the same vector."""

    def __init__(self) -> None:
        by_id = {p.pair_id: p.reply for p in import_file(SAMPLE).pairs}
        self.alias = {by_id[b]: by_id[a] for a, b in NEAR_DUPS}
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        out = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(self.alias.get(t, t).encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(64).astype(np.float32)
            out.append(v / np.linalg.norm(v))
        return np.stack(out)


@pytest.fixture(scope="module")
def encoder() -> StubEncoder:
    return StubEncoder()


@pytest.fixture()
def imported(tmp_path: Path, encoder: StubEncoder):
    steps: list[tuple[float, str]] = []
    out = import_to_review([SAMPLE], tmp_path, "sample", encoder=encoder, progress=lambda f, d: steps.append((f, d)))
    return out, ReviewStore(tmp_path), steps


def test_import_sample_funnel_and_review_dataset(imported) -> None:
    out, store, steps = imported
    assert out.funnel.n_in == 260 and out.funnel.n_out == 198 and out.n_stored == 198
    assert out.funnel.dropped["near_duplicate"] == 6 and out.funnel.dropped["too_early"] == 8
    assert out.formats == ["sample (jsonl)"]
    rows = funnel_rows(out.funnel)
    assert rows[0] == ["in", 260] and rows[-1] == ["out", 198] and ["dropped: low likes", 8] in rows
    assert store.progress("sample") == {
        "total": 198,
        "reviewed": 0,
        "kept": 0,
        "discarded": 0,
        "edited": 0,
        "pending": 198,
    }
    meta = store.meta("sample")
    assert (
        meta["funnel"]["out"] == 198
        and meta["filter_config"]["min_likes"] == 5
        and meta["semantic"]["threshold"] == 0.85
    )
    assert [f for f, _ in steps] == sorted(f for f, _ in steps) and steps[-1][0] == 1.0
    line, funnel = dataset_summary(store, "sample")
    assert "funnel 260 in → 198 out" in line and funnel.to_dict() == out.funnel.to_dict()
    md = import_report_markdown(out)
    assert "**260 pairs**" in md and r"sample\_pairs.jsonl" in md and "format **sample**" in md


def test_thresholds_change_the_funnel_and_replace_needs_consent(tmp_path: Path, encoder: StubEncoder) -> None:
    cfg = make_filter_config(
        min_reply_chars=30,
        max_reply_chars=280,
        min_author_followers=500,
        max_author_followers=100000,
        min_time_diff_seconds=300,
        min_likes="",
        languages="en",
    )  # empty likes = no bound
    assert cfg.min_likes is None
    out = import_to_review([SAMPLE], tmp_path, "loose", filter_config=cfg, semantic_threshold=None)
    assert out.funnel.dropped["low_likes"] == 0 and out.funnel.dropped["near_duplicate"] == 0
    assert out.funnel.n_out == 204 + 8 - 0  # the 8 low-likes rows now pass; no semantic step
    with pytest.raises(ValueError, match="already exists"):
        import_to_review([SAMPLE], tmp_path, "loose", encoder=encoder)
    again = import_to_review([SAMPLE], tmp_path, "loose", encoder=encoder, replace=True)
    assert again.n_stored == 198 == ReviewStore(tmp_path).progress("loose")["pending"]
    with pytest.raises(ValueError, match="minimum"):
        make_filter_config(min_reply_chars=300, max_reply_chars=280)
    with pytest.raises(ValueError, match="whole number"):
        make_filter_config(min_likes="lots")


def test_malformed_file_stores_nothing(tmp_path: Path, encoder: StubEncoder) -> None:
    bad = tmp_path / "broken.jsonl"
    good = SAMPLE.read_text(encoding="utf-8").splitlines()[:3]
    bad.write_text("\n".join(good + ['{"pair_id": "x1", "tweet": "hi", "reply": '] + good[:1]) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.jsonl.*line 4"):
        import_to_review([SAMPLE, bad], tmp_path / "data", "mixed", encoder=encoder)
    assert ReviewStore(tmp_path / "data").datasets() == []
    junk = tmp_path / "notes.txt"
    junk.write_text("just some words\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown format"):
        import_to_review([junk], tmp_path / "data", "junk", encoder=encoder)
    with pytest.raises(ValueError, match="invalid dataset name"):
        import_to_review([SAMPLE], tmp_path / "data", "../escape", encoder=encoder)
    assert ReviewStore(tmp_path / "data").datasets() == []


def test_sources_mapping_and_csv(tmp_path: Path, encoder: StubEncoder) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        resolve_sources([], str(tmp_path / "nope.jsonl"))
    with pytest.raises(ValueError, match="is a folder"):
        resolve_sources([], str(tmp_path))
    with pytest.raises(ValueError, match="Nothing to import"):
        resolve_sources(None, "  ")
    assert resolve_sources([str(SAMPLE)], f"{SAMPLE}\n") == [SAMPLE]  # same file twice → once
    assert parse_mapping("") is None
    assert parse_mapping('{"tweet": "parent_text", "reply": "text"}') == {"tweet": "parent_text", "reply": "text"}
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_mapping("{tweet: parent}")
    with pytest.raises(ValueError, match="unknown field"):
        parse_mapping('{"twete": "x"}')
    mapping = parse_mapping(
        '{"id": "Tweet ID", "text": "Content", "created_at": "Posted At", "in_reply_to_id": "Reply To", '
        '"author_id": "Handle", "author_followers": "Followers", "likes": "Likes", "retweets": "Reposts", '
        '"has_media": "Has Media", "lang": "Language"}'
    )
    out = import_to_review(
        resolve_sources([], str(FIXTURES / "tweets_export.csv")),
        tmp_path,
        "csv",
        mapping=mapping,
        encoder=encoder,
        filter_config=FilterConfig(min_likes=None),
    )
    r = out.reports[0]
    assert r.format == "csv" and out.funnel.n_in == r.n_pairs == 3 and r.missing_parent == ["9004"]
    assert "missing parents for replies: 9004" in import_report_markdown(out)


def test_review_navigation_decisions_and_resume(imported) -> None:
    _out, store, _ = imported
    v = review_view(store, "sample", "pending")
    assert v.item is not None and v.item.index == 0 and (v.position, v.count) == (1, 198)
    first = v.item.index
    record_decision(store, "sample", first, "keep", reviewer="t")
    v = advance_after_decision(store, "sample", "pending", first)
    second = v.item.index
    assert second > first and v.count == 197 and v.position == 1
    record_decision(store, "sample", second, "discard")
    third = advance_after_decision(store, "sample", "pending", second).item.index
    record_decision(store, "sample", third, "edit", edited_text="  A tighter, specific reply without links.  ")
    with pytest.raises(ValueError, match="URL"):
        record_decision(store, "sample", third, "edit", edited_text="see example.com")
    assert store.get("sample", third).reply == "A tighter, specific reply without links."
    assert store.get("sample", third).original_reply != store.get("sample", third).reply

    # a fresh store object (another browser / a reload) resumes at the first pending pair
    fresh = ReviewStore(store.data_dir)
    v = review_view(fresh, "sample", "pending")
    assert v.item is not None and v.item.index not in (first, second, third) and v.progress["reviewed"] == 3
    assert v.progress["kept"] == v.progress["discarded"] == v.progress["edited"] == 1
    assert 'data-reviewed="3"' in progress_html(v.progress) and "3 / 198 reviewed" in progress_html(v.progress)

    # filters and prev/next
    assert review_view(fresh, "sample", "edited").item.index == third
    assert review_view(fresh, "sample", "discarded", index=first).item.index == second  # not discarded → first that is
    a = review_view(fresh, "sample", "all", index=second)
    assert step(fresh, "sample", "all", second, +1).item.index == second + 1
    assert step(fresh, "sample", "all", second, -1).item.index == second - 1
    assert step(fresh, "sample", "all", 0, -1).item.index == 0  # stays at the start
    assert a.position == second + 1 and a.count == 198
    record_decision(fresh, "sample", third, "pending")
    assert fresh.progress("sample")["reviewed"] == 2

    lines = why_passed(v.item.pair, v.meta)
    assert any("likes (≥ 5)" in x for x in lines) and any("cosine ≤ 0.85" in x for x in lines)


def test_export_rows_lists_exports(imported, tmp_path: Path) -> None:
    _out, store, _ = imported
    assert export_rows(store.data_dir) == []
    idx = review_view(store, "sample").item.index
    record_decision(store, "sample", idx, "keep")
    record_decision(store, "sample", idx + 1, "keep")
    export_dataset(store.data_dir, "sample", "sample-v1", store=store)
    rows = export_rows(store.data_dir)
    assert rows[0][0] == "sample-v1" and rows[0][1] == 2 and rows[0][5] == "sample"


def test_progress_html_has_no_user_text() -> None:
    h = progress_html({"total": 10, "kept": 2, "edited": 1, "discarded": 1, "pending": 6})
    assert "4 / 10 reviewed" in h and "<script" not in h
    assert "No dataset" in progress_html(None)
