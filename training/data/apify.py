"""Collect tweets with an Apify actor (e.g. ``apidojo/tweet-scraper``) through the official ``apify-client``: start a
run, poll it with progress, download the run's dataset as JSONL (the "apify" format ``training.data.importers`` reads)
and
report what the run cost in USD from its usage.

The token comes from ``APIFY_TOKEN`` only (read by context.Settings in the app, by the collect CLI's ``main``, and
passed in) and is never written anywhere. ``base_url`` points the real client at a
local server in tests (``ApifyClient(api_url=...)``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from apify_client import ApifyClient
from apify_client.errors import ApifyClientError

from common.jsonio import atomic_write
from training.data.importers import import_file

__all__ = ["APIFY_URL", "ApifyError", "ApifyReport", "apify_token", "run_actor"]

APIFY_URL = "https://api.apify.com"
TOKEN_ENV = "APIFY_TOKEN"
_TERMINAL = {"SUCCEEDED", "FAILED", "TIMED-OUT", "ABORTED"}


class ApifyError(RuntimeError):
    """An Apify collection that cannot go on; one sentence for the UI / CLI (never carries the token)."""


@dataclass
class ApifyReport:
    actor: str
    run_id: str
    status: str
    items: int
    out: str
    cost_usd: float | None
    seconds: float
    pairs: int | None = None
    progress: list[str] = field(default_factory=list)

    def summary(self) -> str:
        cost = f"${self.cost_usd:.4f}" if self.cost_usd is not None else "unknown (the run reported no usage)"
        pairs = f", {self.pairs} pairs after import" if self.pairs is not None else ""
        return (
            f"Apify run {self.run_id} of {self.actor} {self.status.lower()} in {self.seconds:.0f} s: "
            f"{self.items} items → {self.out}{pairs}; cost {cost}."
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def apify_token(token: str | None) -> str:
    """The caller's APIFY_TOKEN, or one sentence that names the variable for the admin."""
    tok = (token or "").strip()
    if not tok:
        raise ApifyError(f"Set {TOKEN_ENV} to an Apify API token to run an actor.")
    return tok


def _one_sentence(exc: ApifyClientError, what: str) -> ApifyError:
    status = getattr(exc, "status_code", None)
    if status in (401, 403):
        return ApifyError(
            f"Apify rejected {TOKEN_ENV} (HTTP {status}); set it to a valid API token "
            "(Apify console → Settings → Integrations)."
        )
    if status == 404:
        return ApifyError(f"Apify found no {what} (HTTP 404); check the actor id.")
    msg = str(getattr(exc, "message", "") or exc).splitlines()[0][:200]
    return ApifyError(f"Apify {what} failed ({type(exc).__name__}{f', HTTP {status}' if status else ''}): {msg}")


def run_actor(
    actor: str,
    run_input: dict | None,
    out: Path,
    *,
    token: str | None = None,
    base_url: str | None = None,
    max_items: int | None = None,
    poll_s: float = 5.0,
    max_wait_s: float = 3600.0,
    progress: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    max_retries: int = 4,
) -> ApifyReport:
    """Start ``actor``, wait for it (progress every poll), download its dataset to ``out`` (JSONL, atomic)."""
    actor = (actor or "").strip()
    if not actor:
        raise ApifyError("Give an actor id, e.g. apidojo/tweet-scraper.")
    if max_items is not None and int(max_items) < 1:
        raise ApifyError(f"max items is {max_items}; it must be at least 1, so no run was started.")
    token = apify_token(token)
    base_url = base_url or APIFY_URL  # the app and the CLI pass APIFY_API_URL when it is set
    client = ApifyClient(
        token,
        api_url=base_url,
        api_public_url=base_url,
        max_retries=max_retries,
        min_delay_between_retries=timedelta(milliseconds=50),
    )
    started = clock()
    notes: list[str] = []

    def say(msg: str) -> None:
        notes.append(msg)
        if progress:
            progress(msg)

    try:
        run = client.actor(actor).start(run_input=run_input or {}, max_items=max_items)
    except ApifyClientError as exc:
        raise _one_sentence(exc, f"actor {actor!r}") from exc
    say(f"started run {run.id} of {actor}")
    rc = client.run(run.id)
    try:
        while str(getattr(run.status, "value", run.status)) not in _TERMINAL:
            if clock() - started > max_wait_s:
                raise ApifyError(
                    f"Apify run {run.id} is still {run.status} after {max_wait_s:.0f} s; "
                    "it keeps running on Apify, download its dataset later."
                )
            sleep(poll_s)
            got = rc.get()
            if got is None:
                raise ApifyError(f"Apify lost run {run.id} (not found).")
            run = got
            say(f"{run.status}: {run.status_message or ''}".strip().rstrip(":") + f" ({clock() - started:.0f} s)")
    except ApifyClientError as exc:
        raise _one_sentence(exc, f"run {run.id}") from exc
    status = str(getattr(run.status, "value", run.status))
    if status != "SUCCEEDED":
        raise ApifyError(
            f"Apify run {run.id} ended {status}: {run.status_message or 'no message'}; nothing was downloaded."
        )
    n = 0

    def write(fh) -> None:
        nonlocal n
        for item in client.dataset(run.default_dataset_id).iterate_items():
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
            n += 1

    try:
        atomic_write(out, write)
    except ApifyClientError as exc:
        raise _one_sentence(exc, f"dataset {run.default_dataset_id}") from exc
    say(f"downloaded {n} items")
    pairs = import_file(out, fmt="apify").report.n_pairs if n else 0
    return ApifyReport(
        actor=actor,
        run_id=run.id,
        status=status,
        items=n,
        out=str(out),
        cost_usd=float(run.usage_total_usd) if run.usage_total_usd is not None else None,
        seconds=clock() - started,
        pairs=pairs,
        progress=notes,
    )
