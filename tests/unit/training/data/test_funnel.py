"""The funnel: exact duplicates, the counts on the sample data against assets/README.md, the plot."""

from __future__ import annotations

from training.data.funnel import REASONS, apply_filters
from training.data.pairs import Pair, engagement

from .sample_data import README_DROPS, good


def test_exact_duplicate_keeps_higher_engagement_and_ignores_rejected_copies() -> None:
    text = "Same generic reply that people post everywhere."
    a = good(pair_id="a", reply=text, likes=10, retweets=0)
    b = good(pair_id="b", reply="  SAME generic   reply that people post everywhere. ", likes=6, retweets=3)  # 12 > 10
    c = good(pair_id="c", reply=text, likes=100, author_followers=10)  # best engagement but rejected
    res = apply_filters([a, b, c])
    assert [p.pair_id for p in res.kept] == ["b"]
    reasons = {d.pair.pair_id: (d.reason, d.detail) for d in res.dropped}
    assert reasons == {"c": ("low_followers", "10 followers"), "a": ("exact_duplicate", "b")}
    tie = apply_filters([good(pair_id="first", reply=text), good(pair_id="second", reply=text)])
    assert [p.pair_id for p in tie.kept] == ["first"]
    assert engagement(b) == 12


# ------------------------------------------------------------------ funnel on the sample data


def test_funnel_on_sample_matches_readme(sample: list[Pair]) -> None:
    res = apply_filters(sample)
    f = res.funnel
    assert f.n_in == 260
    by_reason: dict[str, set[str]] = {}
    for d in res.dropped:
        by_reason.setdefault(d.reason, set()).add(d.pair.pair_id)
    for reason, ids in README_DROPS.items():
        assert by_reason.get(reason) == ids, reason
        assert f.dropped[reason] == len(ids)
    assert f.dropped["exact_duplicate"] == 3 and f.dropped["near_duplicate"] == 0
    kept = {p.pair_id: p for p in res.kept}
    for d in res.dropped:
        if d.reason == "exact_duplicate":
            assert engagement(kept[d.detail]) >= engagement(d.pair)
    assert f.n_out == len(res.kept) == 204 == f.n_in - f.n_dropped
    assert list(f.to_dict()["dropped"]) == list(REASONS)
    assert f.to_dict()["out"] == 204 and f.to_dict()["dropped_total"] == 56


def test_funnel_plot_is_labelled_horizontal_bars(sample: list[Pair]) -> None:
    fig = apply_filters(sample).funnel.plot()
    ax = fig.axes[0]
    assert len(ax.patches) == len(REASONS) + 2
    labels = [t.get_text() for t in ax.texts]
    assert labels[0] == "260" and labels[-1] == "204" and "8" in labels
    assert all(p.get_height() < 1 for p in ax.patches)  # barh: thin in y
