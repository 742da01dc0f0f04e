"""Decision gates shown as verdicts: Phase 0 (is fine-tuning worth it?), Phase 4 (did it work?), composite ranking.

* Phase 0, from the judge's absolute 1-10 scores of the base model: mean >= 7 -> "consider RAG first" (the base
  model is already good; a prompt/RAG change is cheaper than training); 4 <= mean < 7 -> "fine-tune";
  mean < 4 -> "rethink the approach". RAG mean >= base mean -> "use RAG" (RAG is the baseline to beat, or enough).
* Phase 4 (and the Leaderboard's adapter verdicts, from human votes): ``decide`` with a ``DecisionRule`` ->
  success / marginal / failure / not enough votes. Every go/no-go rule of the project lives in this file.
* Composite ranking (seed step 5.3): 0.4 * engagement + 0.3 * judge win rate + 0.3 * (1 - eval loss), weights
  editable. Engagement = mean normalised judge score (s - 1) / 9 unless a better proxy is passed; the judge win
  rate is the contender's pooled win rate (ties half) over all its judged pairs; eval loss comes from
  ``adapters/<name>/metrics.json`` ("eval_loss"). Without an eval loss (base, RAG, or an adapter without the file)
  the composite is None and says so; a "partial" score re-normalised over the available terms is given for
  ordering, flagged as such.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from generation.variants import is_lora

from .stats import cohens_h, num, sign_test

__all__ = [
    "DecisionRule",
    "VERDICT_HELP",
    "decide",
    "PHASE0_HELP",
    "PHASE4_HELP",
    "COMPOSITE_HELP",
    "Weights",
    "phase0",
    "phase4",
    "read_eval_loss",
    "composite_score",
    "rank_models",
]

PHASE0_HELP = (
    "Is fine-tuning worth it? (the base model's mean judge score, 1-10): >= 7 consider RAG first; 4-6 fine-tune; "
    "< 4 rethink the approach. RAG mean >= base mean: use RAG."
)
PHASE4_HELP = (
    "Did the adapter work? (adapter vs Base / RAG few-shot, the judge compares each pair twice with positions "
    "swapped): success if p < 0.05, "
    "improvement > 20% and Cohen's h > 0.3; marginal if ahead with p < 0.10 or improvement 10-20%; "
    "otherwise failure; fewer than the minimum decisive judgments: not enough votes."
)
COMPOSITE_HELP = (
    "Composite score = w_e * engagement + w_w * judge win rate + w_l * (1 - eval loss); "
    "engagement = mean (score - 1) / 9. Eval loss is in nats per token, so with losses above 1 the last "
    "term is negative: the composite orders adapters, it is not a probability."
)


@dataclass(frozen=True)
class DecisionRule:
    """The seed's go/no-go rule for a LoRA adapter against base or RAG."""

    alpha_success: float = 0.05
    alpha_marginal: float = 0.10
    min_improvement: float = 0.20
    marginal_improvement: float = 0.10
    min_effect: float = 0.3
    min_votes: int = 10


VERDICT_HELP = """\
How a LoRA adapter ("LoRA: name", stored as `lora:<name>`) is judged against Base and against RAG few-shot:

* improvement = (adapter wins + ties/2) / (other wins + ties/2) - 1,
  the relative lift in preference (0.25 = preferred 25% more often).
* effect size = Cohen's h of the adapter's decisive win rate vs 0.5,
  `h = 2*asin(sqrt(p)) - 2*asin(sqrt(0.5))`; 0.2 small, 0.5 medium, 0.8 large.
* p = two-sided exact sign test on decisive votes (ties dropped), not adjusted
  for multiple comparisons (the pairs table shows Holm-adjusted p-values).

Verdicts:
* not enough votes - fewer than the minimum number of decisive votes (default 10).
* success  - p < 0.05 AND improvement > 20% AND effect size > 0.3.
* marginal - adapter ahead (improvement > 0) and either p < 0.10 or
  improvement between 10% and 20%.
* failure  - anything else, including an adapter that is significantly worse.
"""


def decide(wins: int, losses: int, ties: float, rule: DecisionRule = DecisionRule()) -> dict[str, Any]:
    """Apply the seed's rule to one adapter-vs-other tally (wins/losses from the adapter's side)."""
    decisive = int(wins + losses)
    ahead, behind = wins + ties / 2, losses + ties / 2
    improvement = ahead / behind - 1 if behind > 0 else (math.inf if ahead > 0 else math.nan)
    p = float(sign_test(wins, decisive)) if decisive else math.nan
    h = float(cohens_h(wins / decisive)) if decisive else math.nan
    imp_txt = (
        "unbounded (the other side has no wins or ties)"
        if improvement == math.inf
        else (f"{improvement:+.1%}" if math.isfinite(improvement) else "n/a")
    )
    facts = (
        f"{wins} wins / {losses} losses / {ties:g} ties; improvement {imp_txt}, "
        f"Cohen's h {h:.2f}, sign-test p = {p:.3g}"
        if decisive
        else f"{wins} wins / {losses} losses / {ties:g} ties"
    )
    if decisive < rule.min_votes:
        verdict = "not enough votes"
        why = f"only {decisive} decisive votes, need {rule.min_votes}"
    elif p < rule.alpha_success and improvement > rule.min_improvement and h > rule.min_effect:
        verdict = "success"
        why = f"p < {rule.alpha_success}, improvement > {rule.min_improvement:.0%} and effect size > {rule.min_effect}"
    elif improvement > 0 and (
        p < rule.alpha_marginal or rule.marginal_improvement <= improvement <= rule.min_improvement
    ):
        verdict = "marginal"
        why = "adapter ahead but not all success criteria met"
    else:
        verdict = "failure"
        why = (
            "the adapter is not ahead"
            if not improvement > 0
            else f"p >= {rule.alpha_marginal} and improvement outside the "
            f"{rule.marginal_improvement:.0%}-{rule.min_improvement:.0%} marginal band"
        )
    return {
        "improvement": num(improvement),
        "effect_size": num(h),
        "p_value": num(p),
        "decisive": decisive,
        "verdict": verdict,
        "explanation": f"{verdict}: {why} ({facts}).",
    }


def phase0(base_mean: float | None, rag_mean: float | None = None) -> dict[str, Any]:
    """Verdicts from mean judge scores (1-10)."""
    if base_mean is None:
        return {
            "verdict": "no data",
            "base_mean": None,
            "rag_mean": num(rag_mean),
            "rag_verdict": None,
            "explanation": "The judge produced no usable base-model scores.",
        }
    b = float(base_mean)
    if b >= 7:
        verdict, why = (
            "consider RAG first",
            f"the base model already scores {b:.1f}/10; try RAG or prompting before training",
        )
    elif b >= 4:
        verdict, why = "fine-tune", f"the base model scores {b:.1f}/10: room to improve that a fine-tune can target"
    else:
        verdict, why = (
            "rethink the approach",
            f"the base model scores only {b:.1f}/10; a LoRA rarely rescues that (check the data, the prompt or a "
            "bigger model)",
        )
    rag_verdict = None
    if rag_mean is not None:
        r = float(rag_mean)
        if r >= b:
            rag_verdict = "use RAG"
            why += (
                f"; use RAG: it scores {r:.1f} >= base {b:.1f}, so RAG is the baseline to beat (or enough on its own)"
            )
        else:
            rag_verdict = "RAG below base"
            why += f"; RAG scores {r:.1f} < base {b:.1f}"
    return {
        "verdict": verdict,
        "base_mean": num(b),
        "rag_mean": num(rag_mean),
        "rag_verdict": rag_verdict,
        "explanation": f"{verdict}: {why}.",
    }


def phase4(
    adapter: str, versus: str, wins: int, losses: int, ties: int, rule: DecisionRule = DecisionRule()
) -> dict[str, Any]:
    """decide on the judge's outcomes (from the adapter's side)."""
    return {
        "adapter": adapter,
        "versus": versus,
        "wins": int(wins),
        "losses": int(losses),
        "ties": int(ties),
        **decide(int(wins), int(losses), float(ties), rule),
    }


@dataclass(frozen=True)
class Weights:
    engagement: float = 0.4
    win_rate: float = 0.3
    eval_loss: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


def read_eval_loss(adapters_dir: str | Path, adapter: str) -> float | None:
    """eval_loss from adapters/<name>/metrics.json; else trainer_state.json's best_metric; else None."""
    d = Path(adapters_dir) / adapter
    for fname, getter in (
        ("metrics.json", lambda j: j.get("eval_loss")),
        ("trainer_state.json", lambda j: j.get("best_metric")),
    ):
        p = d / fname
        if p.is_file():
            try:
                v = num(getter(json.loads(p.read_text())))
            except (ValueError, TypeError, AttributeError):
                v = None
            if v is not None:
                return v
    return None


NO_LOSS_ADAPTER = "no eval_loss in the adapter's metrics.json"
NO_LOSS_BASELINE = "no eval loss: not a trained adapter"


def composite_score(
    engagement: float | None,
    win_rate: float | None,
    eval_loss: float | None,
    weights: Weights = Weights(),
    loss_missing: str = NO_LOSS_ADAPTER,
) -> dict[str, Any]:
    terms = {
        "engagement": engagement,
        "win_rate": win_rate,
        "eval_loss": None if eval_loss is None else 1.0 - float(eval_loss),
    }
    w = weights.to_dict()
    missing = [k for k, v in terms.items() if v is None and w[k] != 0]
    avail = {k: v for k, v in terms.items() if v is not None}
    wsum = sum(w[k] for k in avail)
    partial = (sum(w[k] * v for k, v in avail.items()) / wsum) if wsum > 0 else None
    if missing:
        why = [loss_missing if m == "eval_loss" else f"no {m.replace('_', ' ')}" for m in missing]
        note = f"composite not computed ({'; '.join(why)}); partial score over the other terms"
        return {"composite": None, "partial": num(partial), "missing": missing, "note": note}
    return {
        "composite": num(sum(w[k] * v for k, v in terms.items())),
        "partial": num(partial),
        "missing": [],
        "note": "",
    }


def rank_models(
    contenders: Sequence[str],
    engagement: Mapping[str, float | None],
    win_rate: Mapping[str, float | None],
    eval_loss: Mapping[str, float | None],
    weights: Weights = Weights(),
) -> list[dict[str, Any]]:
    """Rows sorted by composite (complete ones first), then by the partial score; each row says what it is."""
    rows = []
    for c in contenders:
        res = composite_score(
            engagement.get(c),
            win_rate.get(c),
            eval_loss.get(c),
            weights,
            NO_LOSS_ADAPTER if is_lora(c) else NO_LOSS_BASELINE,
        )
        rows.append(
            {
                "contender": c,
                "engagement": num(engagement.get(c)),
                "win_rate": num(win_rate.get(c)),
                "eval_loss": num(eval_loss.get(c)),
                **res,
            }
        )
    rows.sort(
        key=lambda r: (
            r["composite"] is None,
            -(
                r["composite"]
                if r["composite"] is not None
                else (r["partial"] if r["partial"] is not None else -math.inf)
            ),
            r["contender"],
        )
    )
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows
