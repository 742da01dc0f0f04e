"""Votes -> cleaned preference pairs for DPO / KTO, with a counted funnel and a provenance file.

Why a separate module: the vote handler records battles and knows nothing about training; the trainer reads only a
saved preference dataset. This file is the one contract between them, and every vote it drops is counted by rule.

Cleaning, in order (the way Chatbot Arena cleans battles before it uses them):

1. ``flagged``     a battle whose reply reveals the system (or that the store excluded) is not blind: out.
2. ``duplicate``   one vote per voter per pair of replies (voter = the salted client hash; the first vote is kept).
3. ``daily_cap``   at most ``daily_cap`` votes per voter per UTC day (the first ones of the day are kept).
4. ``unreliable``  voters whose decisive votes look random or adversarial, by Wald's sequential probability ratio test
                   of "follows the leave-one-out Bradley-Terry consensus" against "a coin flip" (see ``voter_sprt``).
5. ``tie``         a tie says nothing about which reply is better: out.
6. ``same_reply``  two identical (or empty) replies carry no preference: out.

What remains: "A better"/"B better" -> one (chosen, rejected) pair; "both bad" -> two rejected replies, kept as KTO
unpaired negatives and dropped for DPO.

    python -m arena.preferences --data-dir data --out data/preferences/v1 [--since-last-dpo adapters] [--judge FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from arena.lineage import tweet_hash, used_vote_ids, vote_set_hash
from arena.sampling import bt_with_cov, pair_key
from arena.store import VoteRecord, VoteStore
from common.jsonio import replace_dir
from generation.chat import base_messages

PROVENANCE_FILE = "provenance.json"
SOURCE_HUMAN = "human_vote"
SOURCE_JUDGE = "ai_feedback"  # LLM-judge verdicts with position swap: labelled, never mixed up with votes
FUNNEL_RULES = ("flagged", "duplicate", "daily_cap", "unreliable", "tie", "same_reply")


@dataclass
class CleaningConfig:
    """Knobs of the cleaning rules; the defaults are what the Training tab uses."""

    daily_cap: int = field(default=50, metadata={"help": "votes kept per voter per UTC day (the first ones)"})
    sprt_alpha: float = field(
        default=0.05, metadata={"help": "SPRT: chance of removing a voter who follows the consensus"}
    )
    sprt_beta: float = field(default=0.05, metadata={"help": "SPRT: chance of keeping a voter who votes at random"})
    max_agreement: float = field(
        default=0.95, metadata={"help": "cap on the consensus' own win probability (a vote is never certain)"}
    )
    eval_fraction: float = field(
        default=0.1, metadata={"help": "tweets held out for the eval split (grouped by tweet)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the train/eval split"})


@dataclass
class PreferenceSet:
    """Cleaned pairs plus the funnel that produced them."""

    pairs: list[dict]  # DPO rows: tweet, chosen, rejected, vote_id, source, created_at
    negatives: list[dict]  # KTO unpaired negatives from "both bad": tweet, completion, vote_id, source
    funnel: dict[str, int]
    voters: dict[str, dict]  # voter -> SPRT summary (llr, n, decision)
    vote_ids: list[str]  # every vote id that produced a pair or a negative

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)


def voter_of(rec: VoteRecord) -> str:
    """The voter identity the rules count by: the salted client hash (sessions change on every page load)."""
    return rec.client_hash or rec.session_hash


def reply_pair_key(tweet: str, reply_a: str, reply_b: str) -> str:
    """Order-free key of one (tweet, two replies) battle, so A/B swapped re-votes count as the same pair."""
    x, y = sorted((reply_a.strip(), reply_b.strip()))
    return hashlib.sha256(json.dumps([tweet.strip(), x, y], ensure_ascii=False).encode()).hexdigest()


def _day(created_at: str) -> str:
    return datetime.fromisoformat(created_at).astimezone(timezone.utc).date().isoformat()


def _tally(t: dict[tuple[str, str], list[float]], r: VoteRecord) -> None:
    """Add one vote to pair tallies [wins of the first name, wins of the second, ties] (both-bad is a tie, as on the
    leaderboard)."""
    key = pair_key(r.contender_a, r.contender_b)
    cnt = t.setdefault(key, [0.0, 0.0, 0.0])
    if r.vote in ("a", "b"):
        winner = r.contender_a if r.vote == "a" else r.contender_b
        cnt[0 if winner == key[0] else 1] += 1
    else:
        cnt[2] += 1


def _consensus(tallies: dict[tuple[str, str], list[float]]) -> dict[str, float]:
    """Bradley-Terry betas from pair tallies (ties as half wins); empty when fewer than two contenders have votes."""
    names = sorted({n for k, c in tallies.items() if sum(c) > 0 for n in k})
    if len(names) < 2:
        return {}
    beta, _ = bt_with_cov(names, tallies)
    return dict(zip(names, (float(b) for b in beta)))


def voter_sprt(votes: Sequence[VoteRecord], beta: dict[str, float], cfg: CleaningConfig) -> dict[str, Any]:
    """Wald's SPRT over one voter's decisive votes in time order.

    H1 (honest): the voter picks A with the consensus probability q = sigmoid(beta_A - beta_B).
    H0 (random): the voter picks A with probability 1/2 (an adversarial voter does worse than H0 and is rejected
    sooner).
    Each vote adds log(P(vote | H1) / P(vote | H0)); the walk stops at log((1-beta)/alpha) (accept honest) or at
    log(beta/(1-alpha)) (reject: random or adversarial). A voter the test has not decided is kept.
    """
    upper = math.log((1 - cfg.sprt_beta) / cfg.sprt_alpha)
    lower = math.log(cfg.sprt_beta / (1 - cfg.sprt_alpha))
    llr, n, decision = 0.0, 0, "undecided"
    lo, hi = 1 - cfg.max_agreement, cfg.max_agreement
    for rec in votes:
        if rec.vote not in ("a", "b") or rec.contender_a not in beta or rec.contender_b not in beta:
            continue
        q = 1.0 / (1.0 + math.exp(-(beta[rec.contender_a] - beta[rec.contender_b])))
        q = min(hi, max(lo, q))
        p_vote = q if rec.vote == "a" else 1 - q
        llr += math.log(p_vote / 0.5)
        n += 1
        if llr >= upper:
            decision = "honest"
            break
        if llr <= lower:
            decision = "random_or_adversarial"
            break
    return {"llr": round(llr, 4), "n": n, "decision": decision}


def clean_votes(
    records: Iterable[VoteRecord], cfg: CleaningConfig | None = None, exclude_vote_ids: Iterable[str] = ()
) -> PreferenceSet:
    """Apply the rules in order; each drop is counted under its rule's name."""
    cfg = cfg or CleaningConfig()
    if cfg.daily_cap < 1:
        raise ValueError(f"daily_cap must be at least 1 vote per voter per day, got {cfg.daily_cap}.")
    skip = set(exclude_vote_ids)
    recs = sorted((r for r in records if r.battle_id not in skip), key=lambda r: (r.created_at, r.battle_id))
    funnel: dict[str, int] = {"votes": len(recs), "already_used": len(skip)}
    for rule in FUNNEL_RULES:
        funnel[rule] = 0

    kept: list[VoteRecord] = []
    for r in recs:
        if r.excluded or r.flags:
            funnel["flagged"] += 1
        else:
            kept.append(r)
    seen: set[tuple[str, str]] = set()
    step: list[VoteRecord] = []
    for r in kept:
        key = (voter_of(r), reply_pair_key(r.tweet, r.reply_a, r.reply_b))
        if key in seen:
            funnel["duplicate"] += 1
        else:
            seen.add(key)
            step.append(r)
    per_day: dict[tuple[str, str], int] = defaultdict(int)
    kept = []
    for r in step:
        key = (voter_of(r), _day(r.created_at))
        per_day[key] += 1
        if per_day[key] > cfg.daily_cap:
            funnel["daily_cap"] += 1
        else:
            kept.append(r)

    # Leave-one-out consensus: each voter is judged against a BT fit of everybody else's votes.
    # Outcome counts are additive, so "everyone but v" is the total minus v's own: one pass, not one per voter.
    by_voter: dict[str, list[VoteRecord]] = defaultdict(list)
    own_tallies: dict[str, dict[tuple[str, str], list[float]]] = defaultdict(dict)
    total: dict[tuple[str, str], list[float]] = {}
    for r in kept:
        v = voter_of(r)
        by_voter[v].append(r)
        _tally(total, r)
        _tally(own_tallies[v], r)
    voters: dict[str, dict] = {}
    bad: set[str] = set()
    if len(by_voter) > 1:
        for v, own in by_voter.items():
            others = {
                k: [t - o for t, o in zip(cnt, own_tallies[v].get(k, (0.0, 0.0, 0.0)))] for k, cnt in total.items()
            }
            beta = _consensus(others)
            voters[v] = voter_sprt(own, beta, cfg) if beta else {"llr": 0.0, "n": 0, "decision": "undecided"}
            if voters[v]["decision"] == "random_or_adversarial":
                bad.add(v)
    step = []
    for r in kept:
        if voter_of(r) in bad:
            funnel["unreliable"] += 1
        else:
            step.append(r)

    pairs: list[dict] = []
    negatives: list[dict] = []
    used: list[str] = []
    for r in step:
        a, b = r.reply_a.strip(), r.reply_b.strip()
        if r.vote == "tie":
            funnel["tie"] += 1
            continue
        if not a or not b or a == b:
            funnel["same_reply"] += 1
            continue
        if r.vote == "both_bad":
            for reply, who in ((a, r.contender_a), (b, r.contender_b)):
                negatives.append(
                    {
                        "tweet": r.tweet,
                        "completion": reply,
                        "vote_id": r.battle_id,
                        "source": SOURCE_HUMAN,
                        "created_at": r.created_at,
                        "contender": who,
                    }
                )
        else:
            chosen, rejected = (a, b) if r.vote == "a" else (b, a)
            winner, loser = (r.contender_a, r.contender_b) if r.vote == "a" else (r.contender_b, r.contender_a)
            pairs.append(
                {
                    "tweet": r.tweet,
                    "chosen": chosen,
                    "rejected": rejected,
                    "vote_id": r.battle_id,
                    "source": SOURCE_HUMAN,
                    "created_at": r.created_at,
                    "chosen_by": winner,
                    "rejected_by": loser,
                }
            )
        used.append(r.battle_id)
    funnel["dpo_pairs"] = len(pairs)
    funnel["kto_negatives"] = len(negatives)
    funnel["both_bad_votes"] = len({n["vote_id"] for n in negatives})
    return PreferenceSet(pairs, negatives, funnel, voters, used)


def judge_pairs(path: str | Path) -> tuple[list[dict], dict[str, int]]:
    """AI feedback: an LLM judge's position-swapped verdicts as extra pairs, labelled ``ai_feedback``.

    Each JSONL line: tweet, reply_a, reply_b, verdict ('a'/'b'/'tie'/'unparsed'), consistent (both orders agreed),
    optional id and judge. Only consistent a/b verdicts become pairs.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Judge verdict file {path} does not exist.")
    out: list[dict] = []
    counts = {"judge_rows": 0, "judge_inconsistent_or_tie": 0, "judge_pairs": 0}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            tweet, ra, rb, verdict = row["tweet"], row["reply_a"].strip(), row["reply_b"].strip(), row["verdict"]
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError):
            raise ValueError(
                f"{path.name} line {n} is not a judge verdict (needs tweet, reply_a, reply_b, verdict)."
            ) from None
        counts["judge_rows"] += 1
        if verdict not in ("a", "b") or not row.get("consistent", False) or not ra or not rb or ra == rb:
            counts["judge_inconsistent_or_tie"] += 1
            continue
        chosen, rejected = (ra, rb) if verdict == "a" else (rb, ra)
        jid = str(row.get("id") or hashlib.sha256(line.encode()).hexdigest()[:16])
        out.append(
            {
                "tweet": tweet,
                "chosen": chosen,
                "rejected": rejected,
                "vote_id": f"judge:{jid}",
                "source": f"{SOURCE_JUDGE}:{row.get('judge', 'llm-judge')}",
                "created_at": "",
                "chosen_by": "",
                "rejected_by": "",
            }
        )
    counts["judge_pairs"] = len(out)
    return out, counts


# ---- dataset -----------------------------------------------------------------------------------------------------
def _messages(tweet: str) -> list[dict]:
    return base_messages(tweet)


def _split_by_tweet(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Eval tweets never appear in train (a pair on a seen tweet would overstate eval accuracy)."""
    tweets = sorted({r["tweet"] for r in rows})
    if len(tweets) < 2:
        return rows, []
    rng = np.random.default_rng(seed)
    order = [tweets[i] for i in rng.permutation(len(tweets))]
    n_eval = max(1, round(fraction * len(tweets)))
    held = set(order[:n_eval])
    return [r for r in rows if r["tweet"] not in held], [r for r in rows if r["tweet"] in held]


def dpo_rows(pairs: list[dict]) -> list[dict]:
    """Conversational preference rows in the Qwen3 chat format (TRL renders them with enable_thinking=False)."""
    return [
        {
            "prompt": _messages(p["tweet"]),
            "chosen": [{"role": "assistant", "content": p["chosen"]}],
            "rejected": [{"role": "assistant", "content": p["rejected"]}],
            "chat_template_kwargs": {"enable_thinking": False},
            "tweet": p["tweet"],
            "vote_id": p["vote_id"],
            "source": p["source"],
        }
        for p in pairs
    ]


def kto_rows(pairs: list[dict], negatives: list[dict]) -> list[dict]:
    """Unpaired rows for KTO: chosen -> label True, rejected and both-bad replies -> label False."""
    rows = []
    for p in pairs:
        for text, label in ((p["chosen"], True), (p["rejected"], False)):
            rows.append(
                {
                    "prompt": _messages(p["tweet"]),
                    "completion": [{"role": "assistant", "content": text}],
                    "label": label,
                    "chat_template_kwargs": {"enable_thinking": False},
                    "tweet": p["tweet"],
                    "vote_id": p["vote_id"],
                    "source": p["source"],
                }
            )
    for n in negatives:
        rows.append(
            {
                "prompt": _messages(n["tweet"]),
                "completion": [{"role": "assistant", "content": n["completion"]}],
                "label": False,
                "chat_template_kwargs": {"enable_thinking": False},
                "tweet": n["tweet"],
                "vote_id": n["vote_id"],
                "source": n["source"],
            }
        )
    return rows


def save_preferences(
    prefs: PreferenceSet,
    out_dir: str | Path,
    cfg: CleaningConfig | None = None,
    extra_pairs: Sequence[dict] = (),
    extra_counts: dict[str, int] | None = None,
) -> dict:
    """Write ``<out>/`` (DPO DatasetDict: train/eval), ``<out>/kto/`` (KTO DatasetDict) and ``<out>/provenance.json``.

    Written into a hidden temp folder and renamed, so a reader never sees half a dataset. Returns the provenance.
    """
    from datasets import Dataset, DatasetDict

    cfg = cfg or CleaningConfig()
    out = Path(out_dir)
    pairs = list(prefs.pairs) + list(extra_pairs)
    if not pairs:
        raise ValueError(f"No clean preference pairs to save (funnel: {json.dumps(prefs.funnel)}).")
    train, evl = _split_by_tweet(pairs, cfg.eval_fraction, cfg.seed)
    held = {r["tweet"] for r in evl}
    neg_train = [n for n in prefs.negatives if n["tweet"] not in held]
    neg_eval = [n for n in prefs.negatives if n["tweet"] in held]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    splits = {"train": Dataset.from_list(dpo_rows(train))}
    if evl:
        splits["eval"] = Dataset.from_list(dpo_rows(evl))
    DatasetDict(splits).save_to_disk(str(tmp))
    kto = {"train": Dataset.from_list(kto_rows(train, neg_train))}
    if evl or neg_eval:
        kto["eval"] = Dataset.from_list(kto_rows(evl, neg_eval))
    DatasetDict(kto).save_to_disk(str(tmp / "kto"))
    ids = sorted({p["vote_id"] for p in pairs} | set(prefs.vote_ids))
    human_ids = sorted(i for i in ids if not i.startswith("judge:"))
    provenance = {
        "kind": "preferences",
        "built_at": datetime.now(timezone.utc).isoformat(),
        "vote_ids": human_ids,
        "judge_ids": sorted(i for i in ids if i.startswith("judge:")),
        "vote_set_sha256": vote_set_hash(ids),
        "n_pairs": len(pairs),
        "n_train": len(train),
        "n_eval": len(evl),
        "n_kto_negatives": len(prefs.negatives),
        "sources": {s: sum(1 for p in pairs if p["source"] == s) for s in sorted({p["source"] for p in pairs})},
        "latest_vote_at": max((p["created_at"] for p in pairs if p["created_at"]), default=None),
        # every tweet in the set, eval split included: a later verdict must not count any tweet this data touched
        "train_tweet_hashes": sorted(
            {tweet_hash(p["tweet"]) for p in pairs} | {tweet_hash(n["tweet"]) for n in prefs.negatives}
        ),
        "funnel": {**prefs.funnel, **(extra_counts or {})},
        "cleaning": asdict(cfg),
        "voters": {
            "checked": len(prefs.voters),
            "removed": sum(1 for v in prefs.voters.values() if v["decision"] == "random_or_adversarial"),
        },
    }
    (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1))
    replace_dir(tmp, out)
    return provenance


def read_provenance(path: str | Path) -> dict:
    """provenance.json of a preference dataset folder (or the file itself)."""
    p = Path(path)
    p = p / PROVENANCE_FILE if p.is_dir() else p
    if not p.is_file():
        raise ValueError(f"{Path(path)} has no {PROVENANCE_FILE}; build it with `python -m arena.preferences`.")
    return json.loads(p.read_text())


def build_from_store(
    store: VoteStore,
    out_dir: str | Path,
    cfg: CleaningConfig | None = None,
    exclude_vote_ids: Iterable[str] = (),
    judge_file: str | Path | None = None,
) -> dict:
    """Store -> cleaned pairs -> saved dataset + provenance (the CLI and the Training tab both come through here)."""
    cfg = cfg or CleaningConfig()
    prefs = clean_votes(store.iter_votes(include_excluded=True), cfg, exclude_vote_ids)
    extra, counts = judge_pairs(judge_file) if judge_file else ([], {})
    return save_preferences(prefs, out_dir, cfg, extra, counts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m arena.preferences",
        description="Build a cleaned DPO/KTO preference dataset from the vote store.",
    )
    p.add_argument("--data-dir", default="data", help="the app's data dir (holds votes.sqlite3)")
    p.add_argument("--out", required=True, help="output folder (a DatasetDict + kto/ + provenance.json)")
    p.add_argument("--daily-cap", type=int, default=CleaningConfig.daily_cap)
    p.add_argument(
        "--since-last-dpo", metavar="ADAPTERS_DIR", help="leave out votes already used by a DPO adapter in this folder"
    )
    p.add_argument("--judge", metavar="JSONL", help="add LLM-judge verdicts (position-swapped) as labelled AI feedback")
    ns = p.parse_args(argv)
    try:
        db = Path(ns.data_dir) / "votes.sqlite3"
        if not db.is_file():
            raise ValueError(f"No vote store at {db}; votes are recorded in the Arena tab.")
        used: set[str] = set()
        if ns.since_last_dpo:
            used = used_vote_ids(ns.since_last_dpo)
        with VoteStore(ns.data_dir) as store:
            prov = build_from_store(store, ns.out, CleaningConfig(daily_cap=ns.daily_cap), used, ns.judge)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "out": ns.out,
                "n_pairs": prov["n_pairs"],
                "funnel": prov["funnel"],
                "vote_set_sha256": prov["vote_set_sha256"],
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
