"""What the curation tests share: the sample file, the drops and near-duplicates assets/README.md lists, a passing
pair."""

from __future__ import annotations

from pathlib import Path

from training.data.pairs import Pair

ROOT = Path(__file__).resolve().parents[4]
SAMPLE = ROOT / "assets" / "sample_pairs.jsonl"

# From assets/README.md ("Rows that should be rejected by the filters").
README_DROPS = {
    "too_short": {"p0046", "p0090", "p0099", "p0129", "p0158", "p0248", "p0258"},
    "too_long": {"p0044", "p0133"},
    "has_url": {"p0033", "p0052", "p0061", "p0062", "p0172", "p0192", "p0214"},
    "low_followers": {"p0013", "p0125", "p0157", "p0171", "p0219", "p0243"},
    "high_followers": {"p0091", "p0105", "p0167", "p0191"},
    "too_early": {"p0005", "p0043", "p0098", "p0137", "p0202", "p0229", "p0246", "p0260"},
    "has_media": {"p0018", "p0021", "p0072", "p0104", "p0114", "p0183", "p0212"},
    "low_likes": {"p0008", "p0110", "p0113", "p0123", "p0199", "p0217", "p0231", "p0238"},
    "wrong_language": {"p0177", "p0179", "p0200", "p0255"},
}
NEAR_DUPS = [
    ("p0022", "p0162"),
    ("p0042", "p0136"),
    ("p0050", "p0053"),
    ("p0068", "p0144"),
    ("p0094", "p0145"),
    ("p0178", "p0259"),
]


def good(**kw) -> Pair:
    base = dict(
        pair_id="x1",
        tweet_id="t1",
        tweet="A tweet.",
        reply="This reply is long enough to pass all rules.",
        likes=10,
        retweets=1,
        author_followers=5000,
        time_diff_seconds=3600,
        has_media=False,
        has_url=False,
        lang="en",
    )
    base.update(kw)
    return Pair(**base)
