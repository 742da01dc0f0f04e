"""Review store (real SQLite) and export (real DatasetDict on disk)."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

import training.data.export as de
from training.data.export import export_dataset, export_pairs, list_exported
from training.data.funnel import apply_filters
from training.data.importers import import_file
from training.data.pairs import Pair
from training.data.review_store import ReviewStore

ROOT = Path(__file__).resolve().parents[4]


def mk(i: int, tweet_id: str | None = None) -> Pair:
    return Pair(
        pair_id=f"p{i}",
        tweet_id=tweet_id or f"t{i // 2}",
        tweet=f"Tweet {i // 2}",
        reply=f"Reply number {i}, long enough to keep.",
        likes=10 + i,
        retweets=i % 3,
        author_followers=1000,
        time_diff_seconds=600,
    )


@pytest.fixture()
def store(tmp_path: Path) -> ReviewStore:
    s = ReviewStore(tmp_path)
    s.create_dataset("ds", [mk(i) for i in range(6)], meta={"source": "unit"})
    return s


def test_schema_is_wal_and_file_under_data_dir(store: ReviewStore, tmp_path: Path) -> None:
    assert store.path == tmp_path / "reviews.sqlite3" and store.path.exists()
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_decisions_persist_across_new_instance_and_resume(store: ReviewStore, tmp_path: Path) -> None:
    first = store.next_pending("ds")
    assert first is not None and first.index == 0 and first.status == "pending"
    store.decide("ds", "p0", "keep", reviewer="ann")
    store.decide("ds", "p1", "discard", reviewer="ann")
    again = ReviewStore(tmp_path)  # restart / second connection
    nxt = again.next_pending("ds")
    assert nxt is not None and nxt.pair_id == "p2"
    it = again.get("ds", 0)
    assert (it.status, it.reviewer) == ("kept", "ann") and it.decided_at is not None
    assert again.get("ds", 1).status == "discarded"
    assert [d["name"] for d in again.datasets()] == ["ds"]
    assert again.meta("ds") == {"source": "unit"}


def test_edit_keeps_original_and_progress_counts(store: ReviewStore) -> None:
    store.decide("ds", "p0", "keep")
    store.decide("ds", "p1", "discard")
    it = store.decide("ds", "p2", "edit", edited_text="  A sharper reply, edited by hand.  ", reviewer="bo")
    assert it.status == "edited" and it.reply == "A sharper reply, edited by hand."
    assert it.original_reply == it.pair.reply == "Reply number 2, long enough to keep."
    # keep with text identical to the original is a plain keep
    assert store.decide("ds", "p3", "keep", edited_text="Reply number 3, long enough to keep.").status == "kept"
    assert store.progress("ds") == {"total": 6, "reviewed": 4, "kept": 2, "discarded": 1, "edited": 1, "pending": 2}
    assert [i.pair_id for i in store.list("ds", status="kept")] == ["p0", "p3"]
    assert [i.pair_id for i in store.list("ds", status="pending")] == ["p4", "p5"]
    assert len(store.list("ds")) == 6
    # undo goes back to pending; history keeps every step
    store.decide("ds", "p2", "pending")
    assert store.get("ds", 2).status == "pending" and store.get("ds", 2).edited_text is None
    assert [h["status"] for h in store.history("ds", "p2")] == ["edited", "pending"]
    assert store.history("ds", "p2")[0]["edited_text"] == "A sharper reply, edited by hand."


@pytest.mark.parametrize(
    "text, msg",
    [
        ("   ", "empty"),
        ("x" * 281, "281 characters; the limit is 280"),
        ("Great point, more at https://t.co/xyz123", "URL"),
        ("Great point, more at example.com/post", "URL"),
    ],
)
def test_invalid_edit_is_refused_and_changes_nothing(store: ReviewStore, text: str, msg: str) -> None:
    store.decide("ds", "p0", "keep", reviewer="ann")
    before = store.get("ds", 0)
    with pytest.raises(ValueError, match=msg):
        store.decide("ds", "p0", "edit", edited_text=text, reviewer="mallory")
    assert store.get("ds", 0) == before
    assert [h["status"] for h in store.history("ds", "p0")] == ["kept"]


def test_unknown_things_raise(store: ReviewStore) -> None:
    with pytest.raises(KeyError, match="nope"):
        store.next_pending("nope")
    with pytest.raises(KeyError, match="p99"):
        store.decide("ds", "p99", "keep")
    with pytest.raises(ValueError, match="unknown decision"):
        store.decide("ds", "p0", "maybe")
    with pytest.raises(ValueError, match="needs edited_text"):
        store.decide("ds", "p0", "edit")
    with pytest.raises(IndexError):
        store.get("ds", 6)
    with pytest.raises(ValueError, match="invalid dataset name"):
        store.create_dataset("../evil", [mk(0)])


def test_create_is_atomic_and_replace_is_explicit(store: ReviewStore) -> None:
    store.decide("ds", "p0", "keep")
    with pytest.raises(ValueError, match="already exists"):
        store.create_dataset("ds", [mk(10)])
    with pytest.raises(ValueError, match="duplicate pair_id"):
        store.create_dataset("ds", [mk(10), mk(10)], replace=True)
    assert store.progress("ds")["kept"] == 1 and store.progress("ds")["total"] == 6  # untouched
    assert store.create_dataset("ds", [mk(10), mk(11)], replace=True) == 2
    assert store.progress("ds") == {"total": 2, "reviewed": 0, "kept": 0, "discarded": 0, "edited": 0, "pending": 2}


def test_concurrent_reviewers(store: ReviewStore, tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def work(ids: list[str]) -> None:
        s = ReviewStore(tmp_path)
        try:
            for pid in ids:
                s.decide("ds", pid, "keep", reviewer=threading.current_thread().name)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=([f"p{i}" for i in range(k, 6, 2)],)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and store.progress("ds")["kept"] == 6


# ------------------------------------------------------------------ export


def test_export_dataset_dict_jsonl_and_card(tmp_path: Path) -> None:
    from datasets import DatasetDict, load_from_disk

    sample = import_file(ROOT / "assets" / "sample_pairs.jsonl").pairs
    fr = apply_filters(sample)
    store = ReviewStore(tmp_path)
    store.create_dataset(
        "sample",
        fr.kept,
        meta={"filter_config": {"min_likes": 5}, "funnel": fr.funnel.to_dict(), "source": "assets/sample_pairs.jsonl"},
    )
    items = store.list("sample")
    for it in items[:150]:
        store.decide("sample", it.pair_id, "keep")
    for it in items[150:170]:
        store.decide("sample", it.pair_id, "discard")
    edited_id = items[0].pair_id
    store.decide("sample", edited_id, "edit", edited_text="An edited reply that is clean and short.")

    info = export_dataset(tmp_path, "sample", "sample-v1", store=store)
    out = Path(info.path)
    assert out == tmp_path / "datasets" / "sample-v1"
    assert info.n_total == 150 and info.n_train + info.n_eval == 150 and info.n_edited == 1

    dd = load_from_disk(str(out))
    assert isinstance(dd, DatasetDict) and set(dd) == {"train", "eval"}
    assert dd["train"].num_rows == info.n_train and dd["eval"].num_rows == info.n_eval > 0
    assert {"tweet", "reply", "likes", "pair_id", "tweet_id"} <= set(dd["train"].column_names)
    assert not set(dd["train"]["tweet_id"]) & set(dd["eval"]["tweet_id"])
    rows = [json.loads(line) for line in (out / "pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 150 and {r["split"] for r in rows} == {"train", "eval"}
    discarded = {it.pair_id for it in items[150:170]}
    assert not discarded & {r["pair_id"] for r in rows}
    edited = next(r for r in rows if r["pair_id"] == edited_id)
    assert edited["reply"] == "An edited reply that is clean and short." and edited["edited"] is True

    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"| train | {info.n_train} |" in card and f"| eval | {info.n_eval} |" in card
    assert "![Reply length histogram](length_hist.png)" in card and "min_likes" in card and "too_short | 7" in card
    for png in ("length_hist.png", "engagement_hist.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    listed = list_exported(tmp_path)
    assert [e.name for e in listed] == ["sample-v1"] and listed[0].n_train == info.n_train
    assert not [p for p in (tmp_path / "datasets").iterdir() if p.name.startswith(".")]  # no temp leftovers

    with pytest.raises(ValueError, match="already exists"):
        export_dataset(tmp_path, "sample", "sample-v1", store=store)


def test_failed_export_leaves_previous_export_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = [(mk(i), False) for i in range(10)]
    first = export_pairs(tmp_path, "ds", pairs)

    def boom(*a, **k):
        raise RuntimeError("disk full while drawing")

    monkeypatch.setattr(de, "_histograms", boom)
    with pytest.raises(RuntimeError):
        export_pairs(tmp_path, "ds", pairs[:4], overwrite=True)
    assert [p.name for p in (tmp_path / "datasets").iterdir()] == ["ds"]
    assert [e.n_total for e in list_exported(tmp_path)] == [first.n_total] == [10]
    with pytest.raises(ValueError, match="nothing to export"):
        export_pairs(tmp_path, "empty", [])
