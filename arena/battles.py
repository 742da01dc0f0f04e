"""Anonymous pairwise battles: issue a battle, accept exactly one valid vote for it.

Why server-side state: the contender names and the left/right order live only in
this process until the vote is stored, so a client cannot learn (or forge) which
system wrote which reply, vote on someone else's battle, or vote twice.
"""

from __future__ import annotations

import copy
import json
import random
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from arena.abuse import (
    DEFAULT_REVEAL_PATTERNS,
    SlidingWindowRateLimiter,
    compile_reveal_patterns,
    detect_flags,
    hash_id,
    resolve_salt,
)
from arena.sampling import PairTallies, SamplingConfig, active_weights
from arena.store import VOTE_CHOICES, WINNER_BY_VOTE, DuplicateVoteError, VoteRecord, VoteStore, iso_from_timestamp
from common.text import validate_tweet
from security.ratelimit import RateWindow

# Pending battles live in memory (the names must not leak before the vote): a restart ends them, and the UI says so.
EXPIRED_MESSAGE = (
    "This battle has expired (battles last an hour and end when the server restarts); "
    "nothing was recorded. Please start a new battle."
)

ContendersFn = Callable[[], Sequence[str]]
GenerateFn = Callable[[str, str], "tuple[str, dict[str, Any]]"]
# (contenders, tweet) -> yields one (reply, settings or None while still growing, queue position) per contender.
StreamFn = Callable[[Sequence[str], str], Iterator["list[tuple[str, dict[str, Any] | None, int]]"]]


@dataclass
class ArenaConfig:
    """Arena policy knobs; defaults are the production values."""

    expiry_seconds: float = 3600.0
    votes_per_minute: int = 20
    votes_per_day: int = 500
    exclude_flagged: bool = True
    # None -> a random salt persisted in the store's data dir (context passes ARENA_SALT when it is set).
    salt: str | None = field(default=None, repr=False)
    reveal_patterns: list[str] = field(default_factory=lambda: list(DEFAULT_REVEAL_PATTERNS))
    app_version: str = "dev"  # context passes ARENA_APP_VERSION
    # Bound on in-memory battles (oldest dropped first) so issuing battles can't exhaust memory.
    max_pending_battles: int = 100_000
    # active = the pair where one more vote reduces uncertainty most (arena/sampling.py, floor keeps every pair in
    # play);
    # balanced = 1/(1+votes), so under-voted pairs catch up.
    pair_sampling: str = "active"
    sampling_floor: float = 0.2


class VoteRefused(Exception):
    """A vote that was not stored; ``str(exc)`` is safe to show to the user."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class NotEnoughContenders(RuntimeError):
    """The arena needs at least two distinct contenders to run a battle."""


@dataclass(frozen=True)
class Battle:
    """What the UI may show before the vote: no contender names anywhere (``BattleManager.reveal`` after the vote)."""

    battle_id: str
    tweet: str
    reply_a: str
    reply_b: str


@dataclass(frozen=True)
class VoteResult:
    """Returned after a stored vote: now the names may be shown."""

    battle_id: str
    choice: str
    contender_a: str
    contender_b: str
    flags: tuple[str, ...]
    excluded: bool


@dataclass
class _PendingBattle:
    battle_id: str
    session_id: str
    created: float
    tweet: str
    contender_a: str
    contender_b: str
    reply_a: str
    reply_b: str
    settings_a: dict[str, Any]
    settings_b: dict[str, Any]
    voted: bool = False


def _pair_key(x: str, y: str) -> tuple[str, str]:
    return (x, y) if x <= y else (y, x)


class BattleManager:
    """Issues battles and records votes; safe to share between Gradio worker threads."""

    def __init__(
        self,
        store: VoteStore,
        contenders_fn: ContendersFn,
        generate_fn: GenerateFn,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        config: ArenaConfig | None = None,
        limiter_factory: Callable[[Sequence[RateWindow]], Any] = SlidingWindowRateLimiter,
        stream_fn: StreamFn | None = None,
    ) -> None:
        self.store = store
        self.contenders_fn = contenders_fn
        self.generate_fn = generate_fn
        self.stream_fn = stream_fn
        self.clock = clock
        # SystemRandom by default: pair choice and left/right order must not be predictable.
        self.rng = rng if rng is not None else random.SystemRandom()
        self.config = copy.deepcopy(config) if config is not None else ArenaConfig()
        self._salt = resolve_salt(self.config.salt, store.data_dir)
        self._reveal_re = compile_reveal_patterns(self.config.reveal_patterns)
        self._lock = threading.Lock()
        self._battles: OrderedDict[str, _PendingBattle] = OrderedDict()
        self._pair_votes: dict[tuple[str, str], int] = store.pair_counts(include_excluded=False)
        if self.config.pair_sampling not in ("active", "balanced"):
            raise ValueError(f"pair_sampling must be active or balanced, got {self.config.pair_sampling!r}.")
        self._sampling = SamplingConfig(floor=self.config.sampling_floor)
        self._tallies = PairTallies(store.battles_for_leaderboard() if self.config.pair_sampling == "active" else ())
        # The app passes a persistent (SQLite) limiter so a restart does not reset everyone's allowance.
        self._limiter = limiter_factory(
            [
                RateWindow(
                    60.0,
                    self.config.votes_per_minute,
                    f"You're voting too fast (limit: {self.config.votes_per_minute} votes per minute). "
                    "Please wait a minute and try again.",
                ),
                RateWindow(
                    86400.0,
                    self.config.votes_per_day,
                    f"You've reached the daily limit of {self.config.votes_per_day} votes. "
                    "Thank you! Please come back tomorrow.",
                ),
            ]
        )

    # -- issuing ---------------------------------------------------------------
    def pair_weights(self, contenders: Sequence[str] | None = None) -> dict[tuple[str, str], float]:
        """Sampling weight per unordered pair: active (uncertainty, with a floor) or 1/(1+votes) so under-voted pairs
        catch up."""
        names = sorted(set(contenders if contenders is not None else self.contenders_fn()))
        if self.config.pair_sampling == "active":
            return active_weights(names, self._tallies.snapshot(), self._sampling)
        with self._lock:
            return {p: 1.0 / (1 + self._pair_votes.get(p, 0)) for p in combinations(names, 2)}

    def pair_vote_counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._pair_votes)

    def _draw_pair(self, contenders: Sequence[str]) -> tuple[str, str]:
        names = sorted({c for c in contenders if isinstance(c, str) and c})
        if len(names) < 2:
            raise NotEnoughContenders(
                f"The arena needs at least two contenders, but only {len(names)} is available "
                f"({', '.join(names) or 'none'}). Add a RAG index or a LoRA adapter."
            )
        pairs = list(combinations(names, 2))
        active = (
            active_weights(names, self._tallies.snapshot(), self._sampling)
            if self.config.pair_sampling == "active"
            else None
        )
        with self._lock:
            weights = [active[p] if active else 1.0 / (1 + self._pair_votes.get(p, 0)) for p in pairs]
            x, y = self.rng.choices(pairs, weights=weights, k=1)[0]
            if self.rng.random() < 0.5:
                x, y = y, x
        return x, y

    def new_battle(self, session_id: str, tweet: str) -> Battle:
        """Pick a pair, generate both replies, remember the battle server-side."""
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("A session id is required to start a battle.")
        text = validate_tweet(tweet)
        contender_a, contender_b = self._draw_pair(list(self.contenders_fn()))
        # Generation is slow: never hold the lock here.
        reply_a, settings_a = self._generate(contender_a, text)
        reply_b, settings_b = self._generate(contender_b, text)
        return self._register(session_id, text, contender_a, contender_b, reply_a, reply_b, settings_a, settings_b)

    def new_battle_stream(self, session_id: str, tweet: str) -> Iterator[tuple[str, str, int, "Battle | None"]]:
        """Like new_battle, but both replies are generated together (one batch) and yielded as they grow:
        (reply_a, reply_b, queue position, None) ... then (reply_a, reply_b, 0, Battle). Names never leave the
        server."""
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("A session id is required to start a battle.")
        text = validate_tweet(tweet)
        contender_a, contender_b = self._draw_pair(list(self.contenders_fn()))
        if self.stream_fn is None:
            yield "", "", 0, self.new_battle(session_id, text)
            return
        last = None
        for last in self.stream_fn([contender_a, contender_b], text):  # never under self._lock
            (ra, sa, qa), (rb, sb, qb) = last
            if sa is None or sb is None:
                yield ra, rb, max(qa, qb), None
        if last is None or last[0][1] is None or last[1][1] is None:
            raise RuntimeError("The replies could not be generated; please start a new battle.")
        (ra, sa, _), (rb, sb, _) = last
        yield ra, rb, 0, self._register(session_id, text, contender_a, contender_b, ra, rb, dict(sa), dict(sb))

    def new_pool_battle(self, session_id: str, voter_keys: Sequence[str], pool) -> "Battle | None":
        """A battle on a held-out tweet with pre-generated replies (arena/pool.py): no GPU, no waiting.
        None when the pool has no unseen (tweet, pair) for this voter."""
        if not isinstance(session_id, str) or not session_id:
            raise ValueError("A session id is required to start a battle.")
        d = pool.draw(list(voter_keys), self.pair_weights(pool.ready()))
        if d is None:
            return None
        return self._register(
            session_id, d.tweet, d.contender_a, d.contender_b, d.reply_a, d.reply_b, dict(d.settings), dict(d.settings)
        )

    def _register(
        self,
        session_id: str,
        text: str,
        contender_a: str,
        contender_b: str,
        reply_a: str,
        reply_b: str,
        settings_a: dict[str, Any],
        settings_b: dict[str, Any],
    ) -> Battle:
        battle_id = secrets.token_urlsafe(16)
        pending = _PendingBattle(
            battle_id=battle_id,
            session_id=session_id,
            created=self.clock(),
            tweet=text,
            contender_a=contender_a,
            contender_b=contender_b,
            reply_a=reply_a,
            reply_b=reply_b,
            settings_a=settings_a,
            settings_b=settings_b,
        )
        with self._lock:
            self._prune_locked(pending.created)
            self._battles[battle_id] = pending
        return Battle(battle_id, text, reply_a, reply_b)

    def _generate(self, contender: str, tweet: str) -> tuple[str, dict[str, Any]]:
        out = self.generate_fn(contender, tweet)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError("generate_fn must return (reply_text, settings_dict)")
        reply, settings = out
        if not isinstance(reply, str):
            raise TypeError("generate_fn must return the reply as a string")
        return reply, dict(settings or {})

    def _prune_locked(self, now: float) -> None:
        """Forget battles long past expiry (kept one extra expiry period so late votes get
        'expired' rather than 'unknown'), and cap the total."""
        horizon = now - 2 * self.config.expiry_seconds
        while self._battles:
            oldest = next(iter(self._battles.values()))
            if oldest.created < horizon or len(self._battles) >= self.config.max_pending_battles:
                self._battles.popitem(last=False)
            else:
                break

    # -- voting ----------------------------------------------------------------
    def vote(self, session_id: str, battle_id: str, choice: str, client_id: str | None) -> VoteResult:
        """Validate and durably store one vote; raises VoteRefused (nothing stored) otherwise.

        The lock is held across the store write so the double-vote and rate-limit
        checks cannot race; a vote write is a few milliseconds.
        """
        if choice not in VOTE_CHOICES:
            raise VoteRefused("bad_choice", f"Invalid vote {choice!r}: choose one of {', '.join(VOTE_CHOICES)}.")
        now = self.clock()
        with self._lock:
            b = self._battles.get(battle_id) if isinstance(battle_id, str) else None
            if b is None:
                raise VoteRefused("unknown_battle", EXPIRED_MESSAGE)
            if not secrets.compare_digest(b.session_id.encode(), str(session_id).encode()):
                raise VoteRefused(
                    "wrong_session", "This battle was started in another session. Please start a new battle."
                )
            if b.voted:
                raise VoteRefused(
                    "already_voted", "You already voted on this battle. Start a new battle to vote again."
                )
            if now - b.created > self.config.expiry_seconds:
                minutes = self.config.expiry_seconds / 60
                raise VoteRefused(
                    "expired",
                    f"This battle expired (votes are accepted for {minutes:g} minutes). Please start a new battle.",
                )
            session_hash = hash_id(self._salt, str(session_id))
            # No client id (e.g. no IP behind a proxy): such clients share one bucket.
            client_hash = hash_id(self._salt, client_id or "unknown-client")
            keys = ("session:" + session_hash, "client:" + client_hash)
            limited = self._limiter.check(keys, now)
            if limited is not None:
                raise VoteRefused("rate_limited", limited)

            flags = tuple(detect_flags((b.reply_a, b.reply_b), self._reveal_re))
            excluded = bool(flags) and self.config.exclude_flagged
            record = VoteRecord(
                battle_id=b.battle_id,
                created_at=iso_from_timestamp(now),
                tweet=b.tweet,
                contender_a=b.contender_a,
                contender_b=b.contender_b,
                reply_a=b.reply_a,
                reply_b=b.reply_b,
                settings={"a": b.settings_a, "b": b.settings_b},
                vote=choice,
                session_hash=session_hash,
                client_hash=client_hash,
                app_version=self.config.app_version,
                flags=flags,
                excluded=excluded,
            )
            try:
                self.store.add_vote(record)
            except DuplicateVoteError:
                b.voted = True
                raise VoteRefused(
                    "already_voted", "This battle already has a vote. Start a new battle to vote again."
                ) from None
            b.voted = True
            self._limiter.record(keys, now)
            if not excluded:
                key = _pair_key(b.contender_a, b.contender_b)
                self._pair_votes[key] = self._pair_votes.get(key, 0) + 1
                self._tallies.record(b.contender_a, b.contender_b, WINNER_BY_VOTE[choice])
        return VoteResult(
            battle_id=b.battle_id,
            choice=choice,
            contender_a=b.contender_a,
            contender_b=b.contender_b,
            flags=flags,
            excluded=excluded,
        )

    def reveal(self, battle_id: str) -> tuple[str, str]:
        """(contender_a, contender_b) — only once the battle has a stored vote."""
        with self._lock:
            b = self._battles.get(battle_id)
            if b is None:
                raise VoteRefused("unknown_battle", "This battle is unknown or too old.")
            if not b.voted:
                raise VoteRefused("not_voted", "The contenders are revealed only after you vote.")
            return b.contender_a, b.contender_b


def random_heldout_tweet(path: Path, rng: random.Random = random.SystemRandom()) -> str:
    with open(path, encoding="utf-8") as f:
        tweets = [json.loads(line)["tweet"] for line in f if line.strip()]
    return rng.choice(tweets)
