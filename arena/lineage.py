"""Adapter lineage (base -> SFT v1 -> DPO v2 on N votes) and the honest child-vs-parent verdict.

An adapter trained on votes writes ``lineage.json`` into its folder: its parent adapter, the vote set it used (ids and
hash), the tweets it trained on (hashes) and when it was trained. Two things follow from that file:

* the votes already used for training are not offered again ("N clean pairs available since the last DPO run");
* the verdict of a child against its parent counts only votes cast *after* the child was trained, on tweets the child
  never trained on. A vote from before training, or on a training prompt, would grade the model on its own homework.
  ``child_vs_parent`` enforces this in the core, whoever calls it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from arena.store import VoteRecord
from evaluation.gates import DecisionRule, decide
from generation.variants import LORA_PREFIX

LINEAGE_FILE = "lineage.json"
BASE_NAME = "base"


def tweet_hash(tweet: str) -> str:
    """The form training tweets are remembered in (no tweet text in lineage files)."""
    return hashlib.sha256(tweet.strip().encode()).hexdigest()[:32]


def vote_set_hash(vote_ids: Iterable[str]) -> str:
    """One hash naming a set of votes, order-free."""
    return hashlib.sha256("\n".join(sorted(set(vote_ids))).encode()).hexdigest()


def lineage_record(
    *, kind: str, parent_adapter: str, base_model: str, provenance: dict, trained_at: str | None = None
) -> dict:
    """What an adapter trained on votes records about its origin (the trainer writes it before the folder appears)."""
    return {
        "kind": kind,
        "parent_adapter": parent_adapter or "",
        "base_model": base_model,
        "trained_at": trained_at or datetime.now(timezone.utc).isoformat(),
        "vote_set_sha256": provenance.get("vote_set_sha256"),
        "n_votes": len(provenance.get("vote_ids") or []),
        "n_pairs": provenance.get("n_pairs"),
        "vote_ids": list(provenance.get("vote_ids") or []),
        "judge_ids": list(provenance.get("judge_ids") or []),
        "train_tweet_hashes": list(provenance.get("train_tweet_hashes") or []),
        "latest_vote_at": provenance.get("latest_vote_at"),
    }


def write_lineage(adapter_dir: str | Path, **kw: Any) -> dict:
    """lineage_record(**kw) written into an existing adapter folder."""
    rec = lineage_record(**kw)
    Path(adapter_dir, LINEAGE_FILE).write_text(json.dumps(rec, indent=1))
    return rec


def read_lineage(adapter_dir: str | Path) -> dict | None:
    """The adapter's lineage.json, or None for an adapter not trained on votes (an SFT adapter)."""
    p = Path(adapter_dir) / LINEAGE_FILE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


def _adapter_dirs(adapters_dir: str | Path) -> list[Path]:
    d = Path(adapters_dir)
    return sorted(p for p in d.iterdir() if p.is_dir() and (p / "adapter_config.json").is_file()) if d.is_dir() else []


def used_vote_ids(adapters_dir: str | Path) -> set[str]:
    """Every vote id some adapter in this folder was already trained on."""
    out: set[str] = set()
    for p in _adapter_dirs(adapters_dir):
        lin = read_lineage(p)
        if lin:
            out.update(lin.get("vote_ids") or [])
    return out


def preference_runs(adapters_dir: str | Path) -> list[tuple[str, dict]]:
    """(adapter name, lineage) of every adapter trained on votes, oldest first."""
    runs = [(p.name, lin) for p in _adapter_dirs(adapters_dir) if (lin := read_lineage(p))]
    return sorted(runs, key=lambda x: x[1].get("trained_at") or "")


def lineage_chain(adapters_dir: str | Path, name: str, max_depth: int = 32) -> list[dict]:
    """[base, ..., parent, this]: each step {name, kind, n_votes}. A missing parent ends the chain at the base."""
    chain: list[dict] = []
    cur: str | None = name
    seen: set[str] = set()
    while cur and cur not in seen and len(chain) < max_depth:
        seen.add(cur)
        folder = Path(adapters_dir) / cur
        lin = read_lineage(folder)
        kind = (lin or {}).get("kind") or ("sft" if (folder / "adapter_config.json").is_file() else "unknown")
        chain.append({"name": cur, "kind": kind, "n_votes": (lin or {}).get("n_votes")})
        cur = (lin or {}).get("parent_adapter") or None
    chain.append({"name": BASE_NAME, "kind": "base", "n_votes": None})
    return list(reversed(chain))


def lineage_string(adapters_dir: str | Path, name: str) -> str:
    """'base → SFT sft-v1 → DPO dpo-v2 on 120 votes': how an adapter came to be, for the leaderboard."""
    parts = []
    for step in lineage_chain(adapters_dir, name):
        if step["kind"] == "base":
            parts.append(BASE_NAME)
        elif step["kind"] in ("dpo", "kto"):
            parts.append(f"{step['kind'].upper()} {step['name']} on {step['n_votes'] or 0} votes")
        else:
            parts.append(f"{step['kind'].upper()} {step['name']}")
    return " → ".join(parts)


def contender(adapter: str | None) -> str:
    """Arena contender name of an adapter ('' or None = the base model)."""
    return f"{LORA_PREFIX}{adapter}" if adapter else BASE_NAME


@dataclass
class HonestVerdict:
    child: str
    parent: str
    verdict: dict[str, Any]
    used: int  # votes counted
    dropped_before_training: int
    dropped_training_tweet: int
    dropped_flagged: int


def child_vs_parent(
    records: Iterable[VoteRecord], child_adapter: str, lineage: dict, rule: DecisionRule = DecisionRule()
) -> HonestVerdict:
    """The child's verdict against its parent from votes cast after the child was trained, on tweets it never saw.

    Raises ValueError when the lineage lacks what the rule needs (no training time or tweet list): an unverifiable
    verdict is refused rather than computed on votes that may include the training set.
    """
    trained_at = lineage.get("trained_at")
    if not trained_at or "train_tweet_hashes" not in lineage:
        raise ValueError(
            f"Adapter {child_adapter} has no training time or training-tweet list in its lineage; its verdict "
            "against its parent cannot be restricted to unseen votes."
        )
    cutoff = datetime.fromisoformat(trained_at)
    seen = set(lineage.get("train_tweet_hashes") or [])
    child, parent = contender(child_adapter), contender(lineage.get("parent_adapter"))
    wins = losses = 0
    ties = 0.0
    used = before = on_train = flagged = 0
    for r in records:
        if {r.contender_a, r.contender_b} != {child, parent}:
            continue
        if r.excluded or r.flags:
            flagged += 1
            continue
        if datetime.fromisoformat(r.created_at) <= cutoff:
            before += 1
            continue
        if tweet_hash(r.tweet) in seen:
            on_train += 1
            continue
        used += 1
        if r.vote in ("tie", "both_bad"):
            ties += 1
        elif (r.vote == "a") == (r.contender_a == child):
            wins += 1
        else:
            losses += 1
    return HonestVerdict(child, parent, decide(wins, losses, ties, rule), used, before, on_train, flagged)
