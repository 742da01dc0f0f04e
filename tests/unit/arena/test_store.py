"""Vote store + export: real SQLite files, real threads, a real SIGKILLed writer."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from arena.export import CSV_FIELDS, export_votes, push_to_hub
from arena.store import SCHEMA_VERSION, DuplicateVoteError, VoteRecord, VoteStore
from common.jsonio import write_jsonl

ROOT = Path(__file__).resolve().parents[3]


def make_record(bid: str, **over) -> VoteRecord:
    base = dict(
        battle_id=bid,
        tweet="Coffee or tea?",
        contender_a="base",
        contender_b="lora:casual",
        reply_a="Tea, always.",
        reply_b="coffee!!",
        vote="a",
        session_hash="s" * 64,
        client_hash="c" * 64,
        app_version="test",
        settings={"temperature": 0.7},
        created_at="2025-01-02T03:04:05+00:00",
    )
    base.update(over)
    return VoteRecord(**base)


@pytest.fixture
def store(tmp_path: Path):
    s = VoteStore(tmp_path)
    yield s
    s.close()


def test_round_trip(store: VoteStore, tmp_path: Path) -> None:
    rec = make_record(
        "b1",
        flags=("reveals_contender",),
        excluded=True,
        vote="both_bad",
        settings={"a": {"temperature": 0.7}, "b": {"top_p": 0.9}},
    )
    store.add_vote(rec)
    store.add_vote(make_record("b2", vote="b"))
    assert store.count() == 2
    assert store.count(include_excluded=False) == 1
    assert [r.battle_id for r in store.iter_votes()] == ["b2"]
    got = {r.battle_id: r for r in store.iter_votes(include_excluded=True)}
    assert got["b1"] == rec  # every field survives, settings/flags decoded
    store.close()
    with VoteStore(tmp_path) as again:  # and survives reopening
        assert again.count() == 2
        assert again.schema_version() == SCHEMA_VERSION


def test_leaderboard_format_and_excluded(store: VoteStore) -> None:
    store.add_vote(make_record("x1", vote="a", reply_a="abc", reply_b="hello"))
    store.add_vote(make_record("x2", vote="both_bad", contender_a="rag", contender_b="base"))
    store.add_vote(make_record("x3", vote="tie", flags=("reveals_contender",), excluded=True))
    battles = store.battles_for_leaderboard()
    assert [b["battle_id"] for b in battles] == ["x1", "x2"]
    b1 = battles[0]
    assert set(b1) == {"model_a", "model_b", "winner", "len_a", "len_b", "battle_id", "tstamp"}
    assert (b1["model_a"], b1["model_b"], b1["winner"], b1["len_a"], b1["len_b"]) == (
        "base",
        "lora:casual",
        "model_a",
        3,
        5,
    )
    assert b1["tstamp"] == pytest.approx(1735787045.0)
    assert battles[1]["winner"] == "tie (bothbad)"
    assert len(store.battles_for_leaderboard(include_excluded=True)) == 3
    assert store.excluded_counts() == {"reveals_contender": 1}
    assert store.pair_counts() == {("base", "lora:casual"): 1, ("base", "rag"): 1}


def test_duplicate_battle_refused(store: VoteStore) -> None:
    store.add_vote(make_record("dup", vote="a"))
    with pytest.raises(DuplicateVoteError):
        store.add_vote(make_record("dup", vote="b"))
    assert store.count() == 1
    assert next(store.iter_votes()).vote == "a"


def test_db_enforces_one_vote_per_battle(store: VoteStore) -> None:
    """Even bypassing VoteStore, the schema itself rejects a second row."""
    store.add_vote(make_record("raw"))
    conn = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO votes SELECT * FROM votes WHERE battle_id = 'raw'")
    finally:
        conn.close()


@pytest.mark.parametrize(
    "over",
    [
        {"vote": "maybe"},
        {"contender_b": "base"},
        {"battle_id": ""},
        {"created_at": "2025-01-01T00:00:00"},
        {"settings": {"x": object()}},
    ],
)
def test_invalid_records_rejected(store: VoteStore, over: dict) -> None:
    with pytest.raises(ValueError):
        store.add_vote(make_record("bad", **over))
    assert store.count() == 0


def test_wal_sync_and_integrity(store: VoteStore) -> None:
    assert store.journal_mode() == "wal"
    assert store._db().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    for i in range(50):
        store.add_vote(make_record(f"i{i}"))
    assert store.integrity_check() == "ok"
    conn = sqlite3.connect(store.path)  # WAL is a property of the file, seen by other connections
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


def test_newer_schema_refused(tmp_path: Path) -> None:
    VoteStore(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "votes.sqlite3")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        VoteStore(tmp_path)


def test_concurrent_writers(store: VoteStore) -> None:
    n_threads, per_thread = 20, 50
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def worker(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                store.add_vote(make_record(f"t{t}-{i}"))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors[:3]
    assert store.count() == n_threads * per_thread == 1000
    assert len({r.battle_id for r in store.iter_votes()}) == 1000
    assert store.integrity_check() == "ok"


CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from arena.store import VoteStore, VoteRecord
    store = VoteStore({data!r})
    for i in range(10_000_000):
        bid = f"crash-{{i}}"
        store.add_vote(VoteRecord(
            battle_id=bid, tweet="t" * 200, contender_a="base", contender_b="rag",
            reply_a="r" * 300, reply_b="q" * 300, vote="a", session_hash="s", client_hash="c",
            app_version="crash", settings={{"i": i}}))
        sys.stdout.write(bid + "\\n")
        sys.stdout.flush()
    """
)


def test_sigkill_keeps_acknowledged_votes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), data=str(data))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: list[str] = []
    deadline = time.monotonic() + 120
    try:
        assert proc.stdout is not None
        while len(acked) < 300:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"writer died early: {proc.stderr.read() if proc.stderr else ''}")
            if line.endswith("\n"):
                acked.append(line.strip())
            assert time.monotonic() < deadline, "writer too slow"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    with VoteStore(data) as s:
        assert s.integrity_check() == "ok"
        stored = {r.battle_id for r in s.iter_votes()}
    missing = [b for b in acked if b not in stored]
    assert not missing, f"{len(missing)} acknowledged votes lost, e.g. {missing[:3]}"
    assert len(stored) >= len(acked)


# ---- export ------------------------------------------------------------------


def test_export_jsonl_and_csv(store: VoteStore, tmp_path: Path) -> None:
    store.add_vote(make_record("e1", tweet='He said "hi",\nthen left'))
    store.add_vote(make_record("e2", vote="both_bad", flags=("reveals_contender",), excluded=True))
    out = tmp_path / "out" / "votes.jsonl"
    assert export_votes(store, out) == 1
    assert export_votes(store, out, include_excluded=True) == 2
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["battle_id"] for r in rows] == ["e1", "e2"]
    assert rows[0]["model_a"] == "base" and rows[0]["winner"] == "model_a"
    assert rows[0]["tweet"] == 'He said "hi",\nthen left' and rows[0]["settings"] == {"temperature": 0.7}
    assert rows[1]["winner"] == "tie (bothbad)" and rows[1]["excluded"] is True
    assert rows[1]["flags"] == ["reveals_contender"]

    out_csv = tmp_path / "votes.csv"
    assert export_votes(store, out_csv, include_excluded=True) == 2
    with out_csv.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CSV_FIELDS
        crows = list(reader)
    assert crows[0]["tweet"] == 'He said "hi",\nthen left'
    assert json.loads(crows[0]["settings"]) == {"temperature": 0.7}
    assert crows[1]["excluded"] == "1" and json.loads(crows[1]["flags"]) == ["reveals_contender"]
    with pytest.raises(ValueError, match="jsonl or .csv"):
        export_votes(store, tmp_path / "votes.parquet")


def test_export_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "votes.jsonl"
    out.write_text("OLD\n")

    def rows():
        yield {"battle_id": "ok"}
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_jsonl(out, rows())
    assert out.read_text() == "OLD\n"  # old file untouched, not half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["votes.jsonl"]  # no temp left behind
    assert write_jsonl(out, iter([{"a": 1}, {"a": 2}])) == 2
    assert out.read_text() == '{"a": 1}\n{"a": 2}\n'


def test_export_cli(store: VoteStore, tmp_path: Path) -> None:
    store.add_vote(make_record("c1"))
    out = tmp_path / "cli.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "arena.export", "--data-dir", str(tmp_path), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["battle_id"] == "c1"
    bad = subprocess.run(
        [sys.executable, "-m", "arena.export", "--data-dir", str(tmp_path / "nope"), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and "votes.sqlite3" in bad.stderr
    offline = subprocess.run(  # the CLI reads HF_HUB_OFFLINE from its own environment
        [sys.executable, "-m", "arena.export", "--data-dir", str(tmp_path), "--out", str(out), "--push-to-hub", "a/b"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**env, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert offline.returncode == 1 and "offline mode is on (HF_HUB_OFFLINE=1)" in offline.stderr


def test_push_to_hub_offline_is_clear(tmp_path: Path) -> None:
    f = tmp_path / "votes.jsonl"
    f.write_text("{}\n")
    with pytest.raises(RuntimeError) as exc:
        push_to_hub(f, "someone/arena-votes", token="hf_dummy", offline=True)
    msg = str(exc.value)
    assert "offline" in msg and "HF_HUB_OFFLINE" in msg
    with pytest.raises(ValueError, match="does not exist"):
        push_to_hub(tmp_path / "missing.jsonl", "someone/arena-votes", token="hf_dummy")
