"""The one-click loop, UI-free: votes not used yet -> cleaned pairs -> the next DPO run's config -> the runner.

"v(n+1)": the SFT adapter is v1 and every adapter trained on votes adds one, so the next DPO run is
v(2 + number of adapters trained on votes so far).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arena.lineage import lineage_string, preference_runs, used_vote_ids
from arena.preferences import CleaningConfig, build_from_store, clean_votes
from arena.store import VoteStore

from .config import TrainConfig
from .runner import RunHandle, RunManager

# What a DPO run changes from the chosen preset (the parent adapter fixes the LoRA shape).
DPO_OVERRIDES: dict[str, Any] = {
    "kind": "dpo",
    "learning_rate": 5e-5,
    "epochs": 1,
    "dpo_beta": 0.1,
    "warmup_ratio": 0.1,
}
PREFERENCES_DIR = "preferences"


@dataclass
class LoopState:
    available: int  # clean DPO pairs from votes no adapter was trained on yet
    funnel: dict[str, int]
    version: int  # the next run is "DPO v{version}"
    parents: list[str] = field(default_factory=list)  # adapters to start from, newest first
    last_dpo: str | None = None

    def headline(self) -> str:
        since = f"since the last DPO run ({self.last_dpo})" if self.last_dpo else "(no DPO run yet)"
        return f"{self.available} clean preference pairs available {since}"


def adapters_newest_first(adapters_dir: str | Path) -> list[str]:
    d = Path(adapters_dir)
    if not d.is_dir():
        return []
    found = [p for p in d.iterdir() if p.is_dir() and (p / "adapter_config.json").is_file()]
    return [p.name for p in sorted(found, key=lambda p: (p / "adapter_config.json").stat().st_mtime, reverse=True)]


def loop_state(data_dir: str | Path, adapters_dir: str | Path, cleaning: CleaningConfig | None = None) -> LoopState:
    """How many clean pairs the votes offer that no adapter has used, and what the next run would be called."""
    runs = preference_runs(adapters_dir)
    used = used_vote_ids(adapters_dir)
    funnel: dict[str, int] = {}
    n = 0
    if (Path(data_dir) / "votes.sqlite3").is_file():
        with VoteStore(data_dir) as store:
            prefs = clean_votes(store.iter_votes(include_excluded=True), cleaning, used)
        n, funnel = prefs.n_pairs, prefs.funnel
    return LoopState(n, funnel, 2 + len(runs), adapters_newest_first(adapters_dir), runs[-1][0] if runs else None)


def next_config(
    base: TrainConfig, state: LoopState, parent: str, adapters_dir: str | Path, dataset: str = ""
) -> TrainConfig:
    """The preset's config turned into the next DPO run: parent adapter as a folder path, the run named dpo-v{n}."""
    parent_path = str((Path(adapters_dir) / parent).resolve()) if parent else ""
    return TrainConfig.from_dict(
        {**DPO_OVERRIDES, "parent_adapter": parent_path, "dataset": dataset, "run_name": f"dpo-v{state.version}"},
        base=base,
    )


def describe(state: LoopState, parent: str, adapters_dir: str | Path) -> list[str]:
    """Plain-text lines for the Training tab: the headline, the cleaning funnel, where the run starts from."""
    lines = [state.headline()]
    if state.funnel:
        f = state.funnel
        lines.append(
            f"Votes {f.get('votes', 0)} → flagged −{f.get('flagged', 0)}, duplicate −{f.get('duplicate', 0)}, "
            f"daily cap −{f.get('daily_cap', 0)}, unreliable voters −{f.get('unreliable', 0)}, ties "
            f"−{f.get('tie', 0)}, "
            f"identical replies −{f.get('same_reply', 0)}, both bad (KTO only) {f.get('both_bad_votes', 0)}; "
            f"already used by earlier runs: {f.get('already_used', 0)}."
        )
    if parent:
        lines.append(f"Starts from: {lineage_string(adapters_dir, parent)}")
    else:
        lines.append("Starts from the base model (no adapter yet).")
    return lines


def start_next(
    rm: RunManager, data_dir: str | Path, base: TrainConfig, parent: str, cleaning: CleaningConfig | None = None
) -> tuple[RunHandle, TrainConfig, dict]:
    """Build the preference set from unused votes, then start the DPO run. Refusals are ValueError sentences; a
    dataset built for a refused run is removed again."""
    state = loop_state(data_dir, rm.adapters_dir, cleaning)
    if state.available == 0:
        raise ValueError(
            f"No clean preference pairs are available since the last DPO run; collect more votes in the Arena "
            f"(at least {base.min_pairs} are needed)."
        )
    out = Path(data_dir) / PREFERENCES_DIR / f"dpo-v{state.version}-{time.strftime('%Y%m%d-%H%M%S')}"
    with VoteStore(data_dir) as store:
        prov = build_from_store(store, out, cleaning, used_vote_ids(rm.adapters_dir))
    cfg = next_config(base, state, parent, rm.adapters_dir, str(out))
    try:
        handle = rm.start(cfg)
    except Exception:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return handle, cfg, prov
