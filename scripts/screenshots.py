"""Screenshots of every tab for the README: the real app on the embedded model, driven by Debian's Chromium.

    /work/main/.venv/bin/python scripts/screenshots.py            # writes docs/screenshots/<tab>.png

A throwaway data dir gets a few seeded votes (so the Leaderboard has something to say) and the sample pairs are
imported through the Data tab. Takes a few minutes on a 2-core CPU (one reply, one battle).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "browser")]

from arena.store import VoteRecord, VoteStore  # noqa: E402
from tests.support.app_server import browser_page, open_app, running_app  # noqa: E402
from tests.support.ux_helpers import login, wait_text  # noqa: E402

VOTES = {("rag", "base"): "aababaabtaabab", ("lora:demo", "base"): "abaa", ("lora:demo", "rag"): "bab"}


def seed_votes(data_dir: Path) -> None:
    n = itertools.count()
    code = {"a": "a", "b": "b", "t": "tie"}
    with VoteStore(data_dir) as store:
        for (a, b), votes in VOTES.items():
            for v in votes:
                k = next(n)
                store.add_vote(
                    VoteRecord(
                        battle_id=f"seed{k}",
                        tweet="seeded",
                        contender_a=a,
                        contender_b=b,
                        reply_a="x",
                        reply_b="y",
                        vote=code[v],
                        session_hash=f"s{k}",
                        client_hash=f"c{k}",
                        app_version="screens",
                    )
                )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="screens-") as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "data").mkdir()
        seed_votes(tmp_path / "data")
        with running_app(tmp_path) as url, browser_page() as page:
            open_app(page, url)
            shot = lambda name: page.screenshot(path=str(args.out / f"{name}.png"), full_page=True)  # noqa: E731

            page.locator("#gen-tweet textarea").fill("Hot take: most meetings should have been an email.")
            page.locator("#gen-go").click()
            page.wait_for_function(
                "() => document.querySelector('#gen-status')?.innerText.includes('Done')", timeout=300_000
            )
            shot("generate")

            page.get_by_role("tab", name="Arena").click()
            page.locator("#arena-tweet textarea").fill("Tabs or spaces, final answer?")
            page.locator("#arena-start").click()
            page.wait_for_function("() => !document.querySelector('#vote-a')?.disabled", timeout=300_000)
            page.locator("#vote-a").click()
            wait_text(page, "#arena-reveal", "A was")
            shot("arena")

            page.get_by_role("tab", name="Leaderboard").click()
            wait_text(page, "#lb-comparisons", "votes")
            page.get_by_text("Pairwise table").click()
            page.wait_for_timeout(1500)
            shot("leaderboard")

            login(page)
            page.get_by_role("tab", name="Data (admin)").click()
            page.locator("#data-server-path").locator("textarea, input").first.fill(
                str(ROOT / "assets" / "sample_pairs.jsonl")
            )
            page.locator("#data-import").click()
            wait_text(page, "#data-import-status", "passed the filters", timeout=300_000)
            shot("data")

            page.get_by_role("tab", name="Training (admin)").click()
            wait_text(page, "#train-progress-text", "no runs yet", timeout=60_000)
            shot("training")

            page.get_by_role("tab", name="Evaluate (admin)").click()
            wait_text(page, "#eval-estimate", "Estimated time:")
            shot("evaluate")
    print("\n".join(str(p) for p in sorted(args.out.glob("*.png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
