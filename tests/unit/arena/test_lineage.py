"""Lineage: the child-vs-parent verdict counts only votes after training on unseen tweets; lineage strings."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from arena.lineage import child_vs_parent, lineage_record, lineage_string, tweet_hash, used_vote_ids, write_lineage
from arena.store import VoteRecord

TRAINED = datetime(2026, 11, 10, 12, 0, tzinfo=timezone.utc)
_k = iter(range(10**6))


def rec(tweet, when, child_wins=True, a="lora:dpo-v2", b="lora:sft-v1", vote=None, flags=()):
    i = next(_k)
    v = vote or ("a" if child_wins == (a == "lora:dpo-v2") else "b")
    return VoteRecord(
        battle_id=f"x{i}",
        tweet=tweet,
        contender_a=a,
        contender_b=b,
        reply_a=f"ra{i}",
        reply_b=f"rb{i}",
        vote=v,
        session_hash="s",
        client_hash=f"c{i}",
        app_version="t",
        flags=tuple(flags),
        excluded=bool(flags),
        created_at=when.isoformat(),
    )


def lineage(**kw):
    prov = {
        "vote_ids": ["v1", "v2"],
        "vote_set_sha256": "h",
        "n_pairs": 2,
        "train_tweet_hashes": [tweet_hash("seen tweet")],
    }
    return lineage_record(
        kind="dpo", parent_adapter="sft-v1", base_model="tiny", provenance=prov, trained_at=TRAINED.isoformat(), **kw
    )


def test_only_votes_after_training_on_unseen_tweets_count():
    after, before = TRAINED + timedelta(hours=1), TRAINED - timedelta(hours=1)
    records = (
        [rec("new tweet", after) for _ in range(12)]  # counted: 12 child wins
        + [
            rec("other tweet", after, child_wins=False, a="lora:sft-v1", b="lora:dpo-v2") for _ in range(2)
        ]  # counted: 2 losses, sides swapped
        + [rec("new tweet", before, child_wins=False) for _ in range(30)]  # cast before training: out
        + [rec("seen tweet", after, child_wins=False) for _ in range(30)]  # a training prompt: out
        + [rec("new tweet", after, child_wins=False, flags=("reveals_contender",)) for _ in range(3)]  # flagged: out
        + [rec("new tweet", after, a="base", b="lora:dpo-v2")]  # not the child-vs-parent pair: ignored
        + [rec("new tweet", after, vote="tie")]
    )
    hv = child_vs_parent(records, "dpo-v2", lineage())
    assert (hv.child, hv.parent) == ("lora:dpo-v2", "lora:sft-v1")
    assert (
        hv.used == 15
        and hv.dropped_before_training == 30
        and hv.dropped_training_tweet == 30
        and hv.dropped_flagged == 3
    )
    assert hv.verdict["decisive"] == 14 and hv.verdict["verdict"] == "success"  # 12 wins / 2 losses, p = 0.013
    assert hv.verdict["p_value"] == pytest.approx(0.01293, abs=1e-4)  # scipy.stats.binomtest(12, 14).pvalue
    # the same votes with the before-training and training-tweet ones counted would say "failure": the rule matters
    naive = child_vs_parent(
        records,
        "dpo-v2",
        {**lineage(), "trained_at": (TRAINED - timedelta(days=9)).isoformat(), "train_tweet_hashes": []},
    )
    assert naive.verdict["verdict"] == "failure"


def test_a_vote_at_the_training_instant_does_not_count_and_a_base_parent_works():
    lin = {**lineage(), "parent_adapter": ""}
    hv = child_vs_parent(
        [
            rec("t", TRAINED, a="lora:dpo-v2", b="base"),
            rec("t", TRAINED + timedelta(seconds=1), a="lora:dpo-v2", b="base"),
        ],
        "dpo-v2",
        lin,
    )
    assert hv.parent == "base" and hv.used == 1 and hv.dropped_before_training == 1


def test_verdict_without_training_time_or_tweets_is_refused():
    with pytest.raises(ValueError, match="cannot be restricted to unseen votes"):
        child_vs_parent([], "dpo-v2", {"parent_adapter": "sft-v1"})
    bad = lineage()
    del bad["train_tweet_hashes"]
    with pytest.raises(ValueError, match="dpo-v2 has no training time or training-tweet list"):
        child_vs_parent([], "dpo-v2", bad)


def test_lineage_strings_and_used_votes(tmp_path):
    ad = tmp_path / "adapters"
    for name in ("sft-v1", "dpo-v2", "dpo-v3", "orphan"):
        (ad / name).mkdir(parents=True)
        (ad / name / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiny"}))
    write_lineage(
        ad / "dpo-v2", kind="dpo", parent_adapter="sft-v1", base_model="tiny", provenance={"vote_ids": ["a", "b", "c"]}
    )
    write_lineage(ad / "dpo-v3", kind="kto", parent_adapter="dpo-v2", base_model="tiny", provenance={"vote_ids": ["d"]})
    write_lineage(
        ad / "orphan", kind="dpo", parent_adapter="deleted", base_model="tiny", provenance={"vote_ids": ["e"]}
    )
    assert lineage_string(ad, "sft-v1") == "base → SFT sft-v1"
    assert lineage_string(ad, "dpo-v2") == "base → SFT sft-v1 → DPO dpo-v2 on 3 votes"
    assert lineage_string(ad, "dpo-v3") == "base → SFT sft-v1 → DPO dpo-v2 on 3 votes → KTO dpo-v3 on 1 votes"
    assert lineage_string(ad, "orphan") == "base → UNKNOWN deleted → DPO orphan on 1 votes"
    assert used_vote_ids(ad) == {"a", "b", "c", "d", "e"}


def test_leaderboard_section_shows_lineage_and_the_honest_verdict(tmp_path):
    from arena.leaderboard import lineage_markdown
    from arena.store import VoteStore

    ad = tmp_path / "adapters"
    for name in ("sft-v1", "dpo-v2"):
        (ad / name).mkdir(parents=True)
        (ad / name / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "tiny"}))
    (ad / "dpo-v2" / "lineage.json").write_text(json.dumps(lineage()))
    with VoteStore(tmp_path / "data") as store:
        assert lineage_markdown(store, tmp_path / "nothing") == ""
        for r in [rec("new tweet", TRAINED + timedelta(hours=1)) for _ in range(12)] + [
            rec("seen tweet", TRAINED + timedelta(hours=1))
        ]:
            store.add_vote(r)
        md = lineage_markdown(store, ad)
    row = md.splitlines()[-1]
    assert "base → SFT sft\\-v1 → DPO dpo\\-v2 on 2 votes" in row
    assert "12 votes (0 before training and 1 on training tweets left out)" in row and "**success**" in row
