"""BattleManager: blind battles, one valid vote each, abuse controls, pair weighting."""

from __future__ import annotations

import copy
import random
import threading
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from arena.abuse import hash_id, load_or_create_salt
from arena.battles import ArenaConfig, BattleManager, NotEnoughContenders, VoteRefused
from arena.store import VoteRecord, VoteStore

CONTENDERS = ["base", "rag", "lora:casual"]


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def neutral_generate(name: str, tweet: str) -> tuple[str, dict[str, Any]]:
    """Replies that say nothing about who wrote them."""
    return f"Nice point about {tweet[:10]}! #{random.randint(0, 10**6)}", {"temperature": 0.7, "who": name}


@pytest.fixture
def store(tmp_path: Path):
    s = VoteStore(tmp_path)
    yield s
    s.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_manager(
    store: VoteStore, clock: FakeClock, contenders=CONTENDERS, generate=neutral_generate, seed: int = 0, **cfg: Any
) -> BattleManager:
    return BattleManager(
        store,
        lambda: list(contenders),
        generate,
        clock=clock,
        rng=random.Random(seed),
        config=ArenaConfig(salt="test-salt", **cfg),
    )


def test_names_hidden_before_vote_and_revealed_after(store: VoteStore, clock: FakeClock) -> None:
    mgr = make_manager(store, clock)
    battle = mgr.new_battle("sess-1", "  Is pineapple on pizza OK?  ")
    assert battle.tweet == "Is pineapple on pizza OK?"
    public = repr(battle) + repr(asdict(battle)) + repr(copy.deepcopy(battle))
    for name in CONTENDERS:
        assert name not in public
    with pytest.raises(VoteRefused) as exc:
        mgr.reveal(battle.battle_id)
    assert exc.value.reason == "not_voted"
    result = mgr.vote("sess-1", battle.battle_id, "a", "198.51.100.7")
    assert {result.contender_a, result.contender_b} <= set(CONTENDERS)
    assert result.contender_a != result.contender_b
    assert mgr.reveal(battle.battle_id) == (result.contender_a, result.contender_b)
    assert result.flags == () and result.excluded is False
    rec = next(store.iter_votes())
    assert (rec.battle_id, rec.vote, rec.contender_a, rec.contender_b) == (
        battle.battle_id,
        "a",
        result.contender_a,
        result.contender_b,
    )
    assert (rec.reply_a, rec.reply_b, rec.tweet) == (battle.reply_a, battle.reply_b, battle.tweet)
    # settings of each side stored with the side they belong to
    assert rec.settings["a"]["who"] == result.contender_a and rec.settings["b"]["who"] == result.contender_b
    assert rec.created_at.startswith("2023-11-14T22:13:20")


def test_double_vote_refused(store: VoteStore, clock: FakeClock) -> None:
    mgr = make_manager(store, clock)
    b = mgr.new_battle("s", "hello")
    mgr.vote("s", b.battle_id, "tie", "c")
    with pytest.raises(VoteRefused) as exc:
        mgr.vote("s", b.battle_id, "b", "c")
    assert exc.value.reason == "already_voted" and "already voted" in str(exc.value)
    assert store.count() == 1 and next(store.iter_votes()).vote == "tie"


def test_concurrent_double_vote_stores_one(store: VoteStore, clock: FakeClock) -> None:
    mgr = make_manager(store, clock, votes_per_minute=1000)
    b = mgr.new_battle("s", "hello")
    outcomes: list[str] = []
    barrier = threading.Barrier(16)

    def go(i: int) -> None:
        barrier.wait()
        try:
            mgr.vote("s", b.battle_id, "a", f"client-{i}")
            outcomes.append("ok")
        except VoteRefused as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert Counter(outcomes) == {"ok": 1, "already_voted": 15}
    assert store.count() == 1


def test_vote_from_other_session_refused(store: VoteStore, clock: FakeClock) -> None:
    mgr = make_manager(store, clock)
    b = mgr.new_battle("owner", "hello")
    with pytest.raises(VoteRefused) as exc:
        mgr.vote("intruder", b.battle_id, "a", "c")
    assert exc.value.reason == "wrong_session"
    assert store.count() == 0
    mgr.vote("owner", b.battle_id, "a", "c")  # the owner still can
    assert store.count() == 1


def test_expired_battle_refused(store: VoteStore, clock: FakeClock) -> None:
    mgr = make_manager(store, clock, expiry_seconds=3600)
    old = mgr.new_battle("s", "hello")
    fresh_enough = mgr.new_battle("s", "hello again")
    clock.t += 3600  # exactly at the limit: still fine
    mgr.vote("s", fresh_enough.battle_id, "b", "c")
    clock.t += 1
    with pytest.raises(VoteRefused) as exc:
        mgr.vote("s", old.battle_id, "a", "c")
    assert exc.value.reason == "expired" and "expired" in str(exc.value)
    assert store.count() == 1


def test_unknown_battle_and_bad_choice_refused(store: VoteStore, clock: FakeClock) -> None:
    mgr = make_manager(store, clock)
    with pytest.raises(VoteRefused) as exc:
        mgr.vote("s", "no-such-battle", "a", "c")
    assert exc.value.reason == "unknown_battle"
    b = mgr.new_battle("s", "hello")
    for bad in ("A", "left", "", None, "both bad"):
        with pytest.raises(VoteRefused) as exc:
            mgr.vote("s", b.battle_id, bad, "c")  # type: ignore[arg-type]
        assert exc.value.reason == "bad_choice"
    assert store.count() == 0
    mgr.vote("s", b.battle_id, "both_bad", "c")  # a bad choice did not burn the battle
    assert next(store.iter_votes()).vote == "both_bad"


def test_rate_limit_per_session_and_per_client(store: VoteStore, clock: FakeClock) -> None:
    mgr = make_manager(store, clock, votes_per_minute=20)
    battles = [mgr.new_battle("s1", f"tweet {i}") for i in range(22)]
    for b in battles[:20]:
        clock.t += 1
        mgr.vote("s1", b.battle_id, "a", "client-1")
    with pytest.raises(VoteRefused) as exc:
        mgr.vote("s1", battles[20].battle_id, "a", "client-1")
    assert exc.value.reason == "rate_limited" and "per minute" in str(exc.value)
    # a new session from the same client is still limited (per-client window)
    other = mgr.new_battle("s2", "tweet")
    with pytest.raises(VoteRefused) as exc:
        mgr.vote("s2", other.battle_id, "a", "client-1")
    assert exc.value.reason == "rate_limited"
    # the same session from another client is still limited (per-session window)
    with pytest.raises(VoteRefused):
        mgr.vote("s1", battles[20].battle_id, "a", "client-2")
    # an unrelated session+client is not affected
    fresh = mgr.new_battle("s3", "tweet")
    mgr.vote("s3", fresh.battle_id, "a", "client-3")
    assert store.count() == 21
    # sliding window: a minute after the first votes, s1 may vote again; refusal did not burn the battle
    clock.t += 60
    mgr.vote("s1", battles[20].battle_id, "a", "client-1")
    assert store.count() == 22


def test_daily_rate_limit(store: VoteStore, clock: FakeClock) -> None:
    mgr = make_manager(store, clock, votes_per_minute=1000, votes_per_day=5)
    for i in range(5):
        b = mgr.new_battle("s", "t")
        clock.t += 600
        mgr.vote("s", b.battle_id, "a", "c")
    b = mgr.new_battle("s", "t")
    with pytest.raises(VoteRefused) as exc:
        mgr.vote("s", b.battle_id, "a", "c")
    assert exc.value.reason == "rate_limited" and "daily" in str(exc.value)
    clock.t += 86400 - 5 * 600 + 601  # now the first vote is more than 24 h old
    b2 = mgr.new_battle("s", "t")
    mgr.vote("s", b2.battle_id, "a", "c")


def test_tweet_validation_and_contender_count(store: VoteStore, clock: FakeClock) -> None:
    mgr = make_manager(store, clock)
    for bad in ("", "   \n", "x" * 281):
        with pytest.raises(ValueError, match="tweet"):
            mgr.new_battle("s", bad)
    assert mgr.new_battle("s", "x" * 280).tweet == "x" * 280
    with pytest.raises(NotEnoughContenders, match="at least two"):
        make_manager(store, clock, contenders=["base"]).new_battle("s", "hi")
    with pytest.raises(NotEnoughContenders):
        make_manager(store, clock, contenders=["base", "base"]).new_battle("s", "hi")


def test_pair_weighting_favours_pairs_with_few_votes(store: VoteStore, clock: FakeClock) -> None:
    # (base, rag) already has 99 votes; the other two pairs none -> weights 0.01 : 1 : 1.
    for i in range(99):
        store.add_vote(
            VoteRecord(
                battle_id=f"seed{i}",
                tweet="t",
                contender_a="rag",
                contender_b="base",
                reply_a="x",
                reply_b="y",
                vote="a",
                session_hash="s",
                client_hash="c",
                app_version="t",
            )
        )
    calls: list[str] = []
    mgr = make_manager(
        store,
        clock,
        generate=lambda n, t: (calls.append(n) or "ok", {}),
        seed=1,
        votes_per_day=100_000,
        pair_sampling="balanced",
    )
    pairs: Counter[frozenset[str]] = Counter()
    left: Counter[str] = Counter()
    n = 3000
    for _ in range(n):
        contender_a, contender_b = mgr._draw_pair(CONTENDERS)
        pairs[frozenset((contender_a, contender_b))] += 1
        left[contender_a] += 1
    heavy = pairs[frozenset(("base", "rag"))] / n
    assert heavy < 0.02  # expected 0.5 %, uniform would be 33 %
    for p in (("base", "lora:casual"), ("rag", "lora:casual")):
        assert abs(pairs[frozenset(p)] / n - 1 / 2.01) < 0.05
    # left/right is a coin flip: lora:casual appears in ~all draws and should be left about half the time
    assert abs(left["lora:casual"] / (n * (1 - heavy)) - 0.5) < 0.05

    # the cache updates as votes arrive: after 99 votes on each other pair, all weights are equal again
    before = mgr.pair_weights()
    assert before[("base", "rag")] == pytest.approx(0.01)
    mgr2_votes = 0
    while (
        min(
            mgr.pair_vote_counts().get(("base", "lora:casual"), 0),
            mgr.pair_vote_counts().get(("lora:casual", "rag"), 0),
        )
        < 99
    ):
        b = mgr.new_battle("s", "t")
        clock.t += 3.1  # stay under 20 votes / minute
        mgr.vote("s", b.battle_id, "tie", "c")
        mgr2_votes += 1
        assert mgr2_votes < 2000
    counts = mgr.pair_vote_counts()
    assert counts == store.pair_counts()  # cache agrees with the database
    gained_heavy = counts[("base", "rag")] - 99
    # while catching up, the under-voted pairs got most of the new battles
    assert gained_heavy < min(counts[("base", "lora:casual")], counts[("lora:casual", "rag")]) / 1.5
    weights = mgr.pair_weights()
    assert max(weights.values()) / min(weights.values()) < 2
    # a fresh manager reads the same counts from the store
    assert make_manager(store, clock).pair_vote_counts() == counts


def test_flagged_reply_excluded_by_default(store: VoteStore, clock: FakeClock) -> None:
    def leaky(name: str, tweet: str) -> tuple[str, dict]:
        return ("As a fine-tuned model I think so" if name == "lora:casual" else "Sure thing!"), {}

    mgr = make_manager(store, clock, contenders=["base", "lora:casual"], generate=leaky)
    b = mgr.new_battle("s", "hi")
    res = mgr.vote("s", b.battle_id, "a", "c")
    assert res.flags == ("reveals_contender",) and res.excluded is True
    assert store.battles_for_leaderboard() == []
    assert len(store.battles_for_leaderboard(include_excluded=True)) == 1
    assert store.excluded_counts() == {"reveals_contender": 1}
    assert mgr.pair_vote_counts() == {}  # excluded votes do not count toward pair balance

    keep = make_manager(store, clock, contenders=["base", "lora:casual"], generate=leaky, exclude_flagged=False)
    b = keep.new_battle("s2", "hi")
    res = keep.vote("s2", b.battle_id, "b", "c2")
    assert res.flags == ("reveals_contender",) and res.excluded is False
    assert len(store.battles_for_leaderboard()) == 1


@pytest.mark.parametrize(
    "text,flagged",
    [
        ("I used retrieved examples to write this", True),
        ("The Qwen model says hi", True),
        ("few shot magic", True),
        ("my LORA adapter", True),
        ("a rag doll", True),
        ("drag racing is fun", False),
        ("Adaptation is key", False),
        ("coloratura", False),
        ("finetuned", True),
        ("the base model", True),
        ("SmolLM rocks", True),
        ("flora and fauna", False),
    ],
)
def test_reveal_patterns(store: VoteStore, clock: FakeClock, text: str, flagged: bool) -> None:
    mgr = make_manager(store, clock, contenders=["base", "rag"], generate=lambda n, t: (text, {}))
    b = mgr.new_battle("s", "hi")
    assert bool(mgr.vote("s", b.battle_id, "a", "c").flags) is flagged


def test_raw_ids_never_stored(tmp_path: Path, clock: FakeClock) -> None:
    session, client = "gradio-session-RAW-7f3a9c", "203.0.113.77"
    store = VoteStore(tmp_path)
    mgr = BattleManager(store, lambda: CONTENDERS, neutral_generate, clock=clock, rng=random.Random(0))
    for i in range(5):
        b = mgr.new_battle(session, f"tweet {i}")
        mgr.vote(session, b.battle_id, "a", client)
    rec = next(store.iter_votes())
    salt = load_or_create_salt(tmp_path)  # no configured salt: the per-data-dir salt was used
    assert rec.session_hash == hash_id(salt, session) and rec.client_hash == hash_id(salt, client)
    blobs = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("votes.sqlite3"))
    store.close()
    blobs += b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("votes.sqlite3"))
    assert rec.session_hash.encode() in blobs  # sanity: we are looking at the right bytes
    for raw in (session, client):
        assert raw.encode() not in blobs and raw.encode("utf-16-le") not in blobs


def test_salt_persisted_per_data_dir(tmp_path: Path) -> None:
    s1 = load_or_create_salt(tmp_path / "d1")
    assert s1 == load_or_create_salt(tmp_path / "d1") and len(s1) >= 32
    assert s1 != load_or_create_salt(tmp_path / "d2")
    assert (tmp_path / "d1" / "arena_salt").stat().st_mode & 0o077 == 0
    store = VoteStore(tmp_path / "d3")
    cfg = ArenaConfig(salt="configured")  # what context passes from ARENA_SALT
    mgr = BattleManager(
        store,
        lambda: CONTENDERS,
        neutral_generate,
        clock=FakeClock(),
        rng=random.Random(0),
        config=cfg,
    )
    b = mgr.new_battle("s", "t")
    mgr.vote("s", b.battle_id, "a", "c")
    assert next(store.iter_votes()).session_hash == hash_id("configured", "s")
    assert not (tmp_path / "d3" / "arena_salt").exists() and "configured" not in repr(mgr.config)
    store.close()
