"""What the Leaderboard tab says, computed from ``compute_leaderboard``'s dict: no Gradio here, so it is unit-tested.

* Rank as Chatbot Arena does: 1 + the number of contenders statistically better (their 95% CI lower bound above this
  one's upper bound). Contenders whose intervals overlap share a rank; nobody is "#1" on four votes.
* A contender under ``PRELIMINARY_VOTES`` votes is marked "preliminary".
* One plain sentence per comparison, and the votes still needed.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from evaluation.stats import cohens_h, votes_for_power
from generation.variants import friendly_name

PRELIMINARY_VOTES = 30  # below this many votes a contender's place is marked "preliminary"
SETTLE_POINTS = 10  # "a 10-point difference": a 60/40 split of decisive votes
ALPHA = 0.05

LEADERBOARD_COLUMNS = ["Rank", "Contender", "Rating", "95% CI", "Votes", "Win rate"]
PAIR_COLUMNS = [
    "Comparison",
    "Votes (decisive)",
    "Wins / losses / ties",
    "Win rate (95% CI)",
    "Sign test p",
    "Holm-adjusted p",
    "Votes still needed",
]


def arena_rank(contenders: list[dict[str, Any]]) -> list[int]:
    """1 + number of contenders whose CI lower bound is above this one's CI upper bound (no CI: nobody is better)."""
    out = []
    for c in contenders:
        hi = c.get("ci_high")
        better = (
            0
            if hi is None
            else sum(1 for o in contenders if o is not c and o.get("ci_low") is not None and o["ci_low"] > hi)
        )
        out.append(1 + better)
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x:.0%}"


def _p(x: float | None) -> str:
    if x is None:
        return "–"
    return "< 0.001" if x < 0.001 else f"{x:.3f}"


def leaderboard_rows(board: dict[str, Any], preliminary_votes: int = PRELIMINARY_VOTES) -> list[list[Any]]:
    """Rows for the ranking table, best first (ties in rank keep the rating order)."""
    cs = board.get("contenders") or []
    ranks = arena_rank(cs)
    rows = []
    for c, rank in sorted(zip(cs, ranks), key=lambda t: (t[1], -(t[0].get("rating") or 0))):
        name = friendly_name(c["name"]) + (" (preliminary)" if c.get("votes", 0) < preliminary_votes else "")
        ci = (
            f"{c['ci_low']:.0f} – {c['ci_high']:.0f}"
            if c.get("ci_low") is not None and c.get("ci_high") is not None
            else "–"
        )
        rating = round(c["rating"]) if c.get("rating") is not None else "–"
        rows.append([rank, name, rating, ci, c.get("votes", 0), _pct(c.get("win_rate"))])
    return rows


def votes_to_settle(decisive: int, points: int = SETTLE_POINTS) -> int:
    """More decisive votes for 80% power to detect a (50+points)/(50-points) split (sign test, alpha 0.05)."""
    need = votes_for_power(float(cohens_h(0.5 + points / 100)), decisive)
    return int(need or 0)


def _about(n: int) -> int:
    """Round to a number a person would say: nearest 10 (nearest 100 above 1,000)."""
    step = 100 if n >= 1000 else 10
    return max(step, int(round(n / step)) * step) if n > 0 else 0


def comparison_sentence(pair: dict[str, Any], min_votes: int = 10) -> str:
    """One sentence on what the votes between two contenders say so far."""
    a, b = friendly_name(pair["a"]), friendly_name(pair["b"])
    dec = int(pair.get("a_wins", 0)) + int(pair.get("b_wins", 0))
    settle = votes_to_settle(dec)
    more = (
        f"about {_about(settle):,} more votes would settle a {SETTLE_POINTS}-point difference"
        if settle > 0
        else f"there are enough votes to see a {SETTLE_POINTS}-point difference, and none shows"
    )
    if dec < min_votes:
        return f"Only {dec} decisive vote{'s' if dec != 1 else ''} between {a} and {b} so far, too few to say; {more}."
    p_adj = pair.get("p_holm")
    if p_adj is not None and p_adj < ALPHA:
        winner, loser = (a, b) if pair["a_wins"] >= pair["b_wins"] else (b, a)
        share = max(pair["a_wins"], pair["b_wins"]) / dec
        return (
            f"{winner} beats {loser}: preferred in {share:.0%} of {dec} decisive votes, "
            f"unlikely to be chance (adjusted p {_p(p_adj)})."
        )
    return f"{a} and {b} are tied so far; {more}."


def still_needed(pair: dict[str, Any]) -> str:
    """``more_votes_for_power`` in words: votes for 80% power at the difference seen so far."""
    n = pair.get("more_votes_for_power")
    if n is None:
        return "– (no difference seen yet)"
    return "0 (enough)" if n == 0 else f"{n:,}"


def pair_rows(board: dict[str, Any]) -> list[list[Any]]:
    """The pairwise table: win rate of the first-named with its Wilson CI, sign test, Holm-adjusted p, votes still
    needed."""
    rows = []
    for p in board.get("pairs") or []:
        dec = int(p["a_wins"]) + int(p["b_wins"])
        wr = p.get("decisive_win_rate_a")
        ci = f"{_pct(wr)} ({_pct(p.get('wilson_low'))} – {_pct(p.get('wilson_high'))})" if wr is not None else "–"
        rows.append(
            [
                f"{friendly_name(p['a'])} vs {friendly_name(p['b'])}",
                f"{p['n']} ({dec})",
                f"{p['a_wins']} / {p['b_wins']} / {p['ties']}",
                ci,
                _p(p.get("p_value")),
                _p(p.get("p_holm")),
                still_needed(p),
            ]
        )
    return rows


def comparisons_markdown(board: dict[str, Any], min_votes: int = 10, escape: Callable[[str], str] = lambda s: s) -> str:
    """A Markdown bullet per comparison; ``escape`` (the UI's inert) makes each sentence plain text (adapter names are
    user-chosen)."""
    pairs = board.get("pairs") or []
    if not pairs:
        return "No comparisons yet: vote in the Arena tab."
    return "\n".join(f"- {escape(comparison_sentence(p, min_votes))}" for p in pairs)


def improvement_text(x: float | None) -> str:
    if x is None:
        return "–"
    return "unbounded" if math.isinf(x) else f"{x:+.0%}"
