"""Votes -> preference pairs: each cleaning rule drops what it should (counted), the dataset and provenance are
exact."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta, timezone

import pytest

from arena import preferences as P
from arena.lineage import tweet_hash, vote_set_hash
from arena.store import VoteRecord, VoteStore

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
_n = iter(range(10**6))


def vote(voter="v1", vote="a", a="base", b="rag", tweet=None, ra=None, rb=None, t=None, flags=(), excluded=False):
    i = next(_n)
    tweet = tweet or f"tweet {i}"
    return VoteRecord(
        battle_id=f"b{i}",
        tweet=tweet,
        contender_a=a,
        contender_b=b,
        reply_a=ra or f"reply A {i}",
        reply_b=rb or f"reply B {i}",
        vote=vote,
        session_hash=f"s-{voter}",
        client_hash=voter,
        app_version="t",
        flags=tuple(flags),
        excluded=excluded,
        created_at=(t or T0 + timedelta(minutes=i)).isoformat(),
    )


def test_flagged_votes_are_dropped_and_counted():
    recs = [
        vote(),
        vote(flags=("reveals_contender",), excluded=True),
        vote(flags=("reveals_contender",)),
        vote(vote="b"),
    ]
    ps = P.clean_votes(recs)
    assert ps.funnel["flagged"] == 2 and ps.funnel["votes"] == 4
    assert {p["vote_id"] for p in ps.pairs} == {recs[0].battle_id, recs[3].battle_id}


def test_one_vote_per_voter_per_reply_pair_even_when_sides_are_swapped():
    first = vote(voter="x", tweet="same", ra="r1", rb="r2")
    again = vote(voter="x", tweet="same", ra="r2", rb="r1", vote="b")  # same replies, swapped sides
    other_voter = vote(voter="y", tweet="same", ra="r1", rb="r2")
    ps = P.clean_votes([first, again, other_voter])
    assert ps.funnel["duplicate"] == 1
    assert [p["vote_id"] for p in ps.pairs] == [first.battle_id, other_voter.battle_id]


def test_daily_cap_keeps_the_first_votes_of_each_utc_day():
    day1 = [vote(voter="z", t=T0 + timedelta(hours=h)) for h in range(5)]
    day2 = [vote(voter="z", t=T0 + timedelta(days=1, hours=h)) for h in range(2)]
    ps = P.clean_votes(day1 + day2, P.CleaningConfig(daily_cap=3))
    assert ps.funnel["daily_cap"] == 2
    assert {p["vote_id"] for p in ps.pairs} == {r.battle_id for r in day1[:3] + day2}
    with pytest.raises(ValueError, match="daily_cap must be at least 1"):
        P.clean_votes(day1, P.CleaningConfig(daily_cap=0))


def _consensus_votes(voter, n, rng, follow=True, alternate=False):
    """Contender strength lora > rag > base; an honest voter picks the stronger side, an adversary the weaker one."""
    order = {"base": 0, "rag": 1, "lora:x": 2}
    out = []
    for k in range(n):
        a, b = rng.sample(list(order), 2)
        stronger_is_a = order[a] > order[b]
        agree = (k % 2 == 0) if alternate else follow
        out.append(vote(voter=voter, a=a, b=b, vote="a" if stronger_is_a == agree else "b"))
    return out


def test_adversarial_and_random_voters_are_removed_by_the_sequential_test():
    rng = random.Random(1)
    honest = [r for v in range(5) for r in _consensus_votes(f"h{v}", 12, rng)]
    adversary = _consensus_votes("adv", 12, rng, follow=False)
    coin = _consensus_votes("coin", 12, rng, alternate=True)
    ps = P.clean_votes(honest + adversary + coin)
    assert ps.voters["adv"]["decision"] == ps.voters["coin"]["decision"] == "random_or_adversarial"
    assert all(ps.voters[f"h{v}"]["decision"] == "honest" for v in range(5))
    assert ps.funnel["unreliable"] == 24
    assert {p["vote_id"] for p in ps.pairs} == {r.battle_id for r in honest}


def test_sprt_log_likelihood_ratio_and_wald_error_rates():
    beta = {"base": 0.0, "rag": math.log(3)}  # consensus: rag beats base with q = 0.75
    cfg = P.CleaningConfig()
    recs = [vote(a="rag", b="base", vote="a"), vote(a="base", b="rag", vote="a")]
    out = P.voter_sprt(recs, beta, cfg)
    assert out["llr"] == pytest.approx(math.log(0.75 / 0.5) + math.log(0.25 / 0.5), abs=1e-4) and out["n"] == 2
    # Wald: P(remove an honest voter) <= ~alpha, P(keep a random one as honest) <= ~beta (long sequences decide).
    rng = random.Random(7)

    def run(p_follow):
        rs = [vote(a="rag", b="base", vote="a" if rng.random() < p_follow else "b") for _ in range(400)]
        return P.voter_sprt(rs, beta, cfg)["decision"]

    honest = [run(0.75) for _ in range(300)]
    coin = [run(0.5) for _ in range(300)]
    assert honest.count("random_or_adversarial") / 300 <= 0.08
    assert coin.count("honest") / 300 <= 0.08
    assert coin.count("random_or_adversarial") / 300 >= 0.9


def test_ties_same_replies_and_both_bad():
    tie = vote(vote="tie")
    same = vote(ra="identical", rb="identical")
    bad = vote(vote="both_bad", ra="meh one", rb="meh two")
    good = vote(vote="b")
    ps = P.clean_votes([tie, same, bad, good])
    assert ps.funnel["tie"] == 1 and ps.funnel["same_reply"] == 1 and ps.funnel["both_bad_votes"] == 1
    assert [p["vote_id"] for p in ps.pairs] == [good.battle_id]
    assert ps.pairs[0]["chosen"] == good.reply_b and ps.pairs[0]["rejected"] == good.reply_a
    assert sorted(n["completion"] for n in ps.negatives) == ["meh one", "meh two"]
    assert ps.funnel["dpo_pairs"] == 1 and ps.funnel["kto_negatives"] == 2


def test_saved_dataset_and_provenance_list_exactly_the_votes_used(tmp_path):
    from datasets import load_from_disk

    recs = [vote(tweet=f"t{i % 6}", ra=f"x{i}", rb=f"y{i}", vote="a" if i % 3 else "b") for i in range(18)]
    recs += [vote(vote="both_bad", tweet="t1"), vote(flags=("reveals_contender",), excluded=True), vote(vote="tie")]
    already = {recs[0].battle_id}
    ps = P.clean_votes(recs, exclude_vote_ids=already)
    prov = P.save_preferences(ps, tmp_path / "prefs", P.CleaningConfig(eval_fraction=0.34))
    dd = load_from_disk(str(tmp_path / "prefs"))
    rows = list(dd["train"]) + list(dd["eval"])
    assert len(rows) == 17 == prov["n_pairs"]
    assert not {r["tweet"] for r in dd["train"]} & {r["tweet"] for r in dd["eval"]}  # eval tweets are unseen
    r = rows[0]
    assert [m["role"] for m in r["prompt"]] == ["system", "user"] and r["tweet"] in r["prompt"][1]["content"]
    assert r["chosen"][0]["role"] == "assistant" and r["chat_template_kwargs"] == {"enable_thinking": False}
    used = {
        x.battle_id for x in recs[1:19]
    }  # 17 pairs + the both-bad vote; not the flagged, the tie or the already-used one
    saved = json.loads((tmp_path / "prefs" / P.PROVENANCE_FILE).read_text())
    assert set(saved["vote_ids"]) == used and saved["vote_set_sha256"] == vote_set_hash(used)
    assert saved["funnel"]["flagged"] == 1 and saved["funnel"]["tie"] == 1 and saved["funnel"]["already_used"] == 1
    assert tweet_hash("t1") in saved["train_tweet_hashes"]
    kto = load_from_disk(str(tmp_path / "prefs" / "kto"))
    labels = [x["label"] for s in kto for x in kto[s]]
    assert labels.count(True) == 17 and labels.count(False) == 17 + 2
    assert not list(tmp_path.glob(".prefs*"))  # no temp folder left behind


def test_nothing_to_save_is_refused_with_the_funnel(tmp_path):
    ps = P.clean_votes([vote(vote="tie")])
    with pytest.raises(ValueError, match="No clean preference pairs"):
        P.save_preferences(ps, tmp_path / "empty")
    assert not (tmp_path / "empty").exists()


def test_judge_verdicts_are_labelled_ai_feedback(tmp_path):
    f = tmp_path / "judge.jsonl"
    f.write_text(
        "\n".join(
            json.dumps(x)
            for x in [
                {
                    "tweet": "t",
                    "reply_a": "one",
                    "reply_b": "two",
                    "verdict": "b",
                    "consistent": True,
                    "judge": "claude",
                    "id": "j1",
                },
                {"tweet": "t", "reply_a": "one", "reply_b": "two", "verdict": "a", "consistent": False},
                {"tweet": "t", "reply_a": "one", "reply_b": "two", "verdict": "tie", "consistent": True},
            ]
        )
        + "\n"
    )
    pairs, counts = P.judge_pairs(f)
    assert counts == {"judge_rows": 3, "judge_inconsistent_or_tie": 2, "judge_pairs": 1}
    assert (
        pairs[0]["chosen"] == "two" and pairs[0]["source"] == "ai_feedback:claude" and pairs[0]["vote_id"] == "judge:j1"
    )
    f.write_text("not json\n")
    with pytest.raises(ValueError, match="line 1 is not a judge verdict"):
        P.judge_pairs(f)


def test_cli_builds_from_a_real_store(tmp_path, capsys):
    with VoteStore(tmp_path / "data") as store:
        for i in range(6):
            store.add_vote(vote(tweet=f"cli {i}", vote="a"))
    assert P.main(["--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_pairs"] == 6 and (tmp_path / "out" / "provenance.json").is_file()
    assert P.main(["--data-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "o2")]) == 2
    assert "No vote store" in capsys.readouterr().err
