"""The battle pool: replies of every contender for the held-out tweets, generated ahead so a pool battle needs no GPU.

Why: a live battle waits for two generations; most visitors press "Start battle" with an empty box (a held-out tweet),
and those replies can be made in large batches while the GPU is otherwise idle. Generation runs as scheduler
*background* work (rows no visitor waits for), with each reply's own OS-seeded generator (a public Generate seed
cannot reproduce a pool reply), and is stored in the Evaluate reply cache format (``ReplyCache``, keyed by model,
adapter fingerprint, prompt and settings) under ``<data_dir>/battle_pool`` -- its own folder, because Evaluate's
replies use a published seed. A new adapter (or a retrained one: its fingerprint changes) is filled in on the next
``refresh()``.

A voter never sees the same (tweet, contender pair) twice from the pool: both the session and the client address are
remembered. What leaves this module for the UI is only the tweet and the two replies; names stay in BattleManager.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, replace
from itertools import combinations
from pathlib import Path
from typing import Callable, Sequence

from evaluation.batch import ReplyCache, adapter_fingerprint, cache_key, load_items
from generation.chat import render_prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolDraw:
    """A drawn battle, server-side only (it holds the names)."""

    tweet: str
    contender_a: str
    contender_b: str
    reply_a: str
    reply_b: str
    settings: dict


class BattlePool:
    def __init__(
        self,
        engine,
        heldout: Path,
        cache_dir: Path,
        contenders_fn: Callable[[], Sequence[str]],
        rng: random.Random | None = None,
        max_voters: int = 100_000,
    ):
        self.engine = engine
        self.items, _ = load_items(heldout)
        self.cache = ReplyCache(cache_dir)
        self.contenders_fn = contenders_fn
        self.rng = rng or random.SystemRandom()
        self.max_voters = max_voters
        self._lock = threading.Lock()
        self._replies: dict[str, tuple[str, list[str]]] = {}  # variant -> (adapter fingerprint, reply per item)
        self._seen: dict[str, set[tuple[int, tuple[str, str]]]] = {}
        self._worker: threading.Thread | None = None
        self.settings = {
            **replace(engine.default_sampling(False), seed=None).to_dict(),
            "thinking": False,
            "source": "battle_pool",
        }

    # ---- filling -------------------------------------------------------------------------------------------------
    def _keys(self, variant: str, fp: str) -> list[str]:
        keys = []
        for it in self.items:
            messages, _ = self.engine.messages_for(it.tweet, variant)
            keys.append(
                cache_key(
                    self.engine.loaded.name,
                    variant,
                    fp,
                    render_prompt(self.engine.tokenizer, messages, False),
                    self.settings,
                )
            )
        return keys

    def missing(self) -> list[str]:
        out = []
        for v in self.contenders_fn():
            have = self._replies.get(v)
            if have is None or have[0] != adapter_fingerprint(self.engine, v):
                out.append(v)
        return out

    def fill(self, variants: Sequence[str] | None = None) -> int:
        """Generate (or load from the cache) every missing contender's replies; returns how many were generated."""
        made = 0
        sampling = replace(self.engine.default_sampling(False), seed=None)
        for v in self.missing() if variants is None else variants:
            fp = adapter_fingerprint(self.engine, v)
            keys = self._keys(v, fp)
            hits = self.cache.get_many(keys)
            todo = [i for i, k in enumerate(keys) if k not in hits]
            if todo:
                results = self.engine.generate_batch(
                    [self.items[i].tweet for i in todo], v, sampling, background=True, private=True
                )
                rows = [
                    (keys[i], v, {"reply": r.reply, "new_tokens": int(r.new_tokens)}) for i, r in zip(todo, results)
                ]
                self.cache.put_many(rows)
                hits.update({k: rec for k, _, rec in rows})
                made += len(todo)
            with self._lock:
                self._replies[v] = (fp, [hits[k]["reply"] for k in keys])
        return made

    def refresh(self) -> bool:
        """Fill missing contenders in a background thread (one at a time); True if one was started."""
        with self._lock:
            if self._worker is not None and self._worker.is_alive():
                return False
            if not self.missing():
                return False

            def run():
                try:
                    self.fill()
                except Exception:  # the pool is an optimisation: live battles still work
                    log.exception("battle pool refresh failed")

            self._worker = threading.Thread(target=run, name="battle-pool", daemon=True)
            self._worker.start()
            return True

    def wait(self, timeout: float | None = None) -> None:
        w = self._worker
        if w is not None:
            w.join(timeout)

    # ---- drawing --------------------------------------------------------------------------------------------------
    def ready(self) -> list[str]:
        live = set(self.contenders_fn())
        with self._lock:
            return sorted(v for v in self._replies if v in live)

    def draw(self, voter_keys: Sequence[str], weights: dict[tuple[str, str], float] | None = None) -> PoolDraw | None:
        """A (tweet, pair) none of `voter_keys` has seen from the pool, pairs weighted like live battles; None if
        the pool has nothing new for this voter (the UI then runs a live battle)."""
        ready = self.ready()
        pairs = list(combinations(ready, 2))
        if not pairs:
            return None
        with self._lock:
            seen = set().union(*(self._seen.get(k, set()) for k in voter_keys))
            options = [(i, p) for p in pairs for i in range(len(self.items)) if (i, p) not in seen]
            if not options:
                return None
            w = [(weights or {}).get(p, 1.0) for _, p in options]
            i, (x, y) = self.rng.choices(options, weights=w, k=1)[0]
            for k in voter_keys:
                if k not in self._seen and len(self._seen) >= self.max_voters:
                    self._seen.pop(next(iter(self._seen)))  # bounded memory: forget the oldest voter
                self._seen.setdefault(k, set()).add((i, (x, y)))
            replies = {v: self._replies[v][1][i] for v in (x, y)}
        if self.rng.random() < 0.5:
            x, y = y, x
        return PoolDraw(self.items[i].tweet, x, y, replies[x], replies[y], dict(self.settings))
