"""Leaderboard in a real browser over a real vote store: Chatbot Arena ranks (overlap = shared rank), "preliminary"
under the
vote threshold, one plain sentence per comparison, the pairwise table with votes still needed, readable help, friendly
names."""

from __future__ import annotations

import itertools

import pytest

from arena.store import VoteRecord, VoteStore
from tests.support.app_server import browser_page, open_app, running_app
from tests.support.ux_helpers import dataframe_rows, require_chromium, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow]
require_chromium()


def _seed_votes(data_dir, plan: dict[tuple[str, str], list[str]]) -> None:
    n = itertools.count()
    with VoteStore(data_dir) as store:
        for (a, b), votes in plan.items():
            for v in votes:
                k = next(n)
                store.add_vote(
                    VoteRecord(
                        battle_id=f"b{k}",
                        tweet="t",
                        contender_a=a,
                        contender_b=b,
                        reply_a="x",
                        reply_b="y",
                        vote=v,
                        session_hash=f"s{k}",
                        client_hash=f"c{k}",
                        app_version="test",
                    )
                )


def test_leaderboard_ranks_sentences_pairs_and_help(tmp_path):
    (tmp_path / "data").mkdir()
    # few votes: a LoRA 3-1 over base must not sit alone at #1
    _seed_votes(
        tmp_path / "data",
        {
            ("lora:v1", "base"): ["a", "a", "a", "b"],
            ("base", "rag"): ["a", "b", "a", "tie"],
            ("lora:v1", "rag"): ["a", "b", "a"],
        },
    )
    with running_app(tmp_path) as url, browser_page() as page:
        open_app(page, url)
        page.get_by_role("tab", name="Leaderboard").click()
        wait_text(page, "#lb-counts", "11")
        wait_text(page, "#lb-table", "preliminary")
        table = dataframe_rows(page, "#lb-table", 6)
        assert [r[0] for r in table] == ["1", "1", "1"], table
        assert {r[1] for r in table} == {
            "LoRA: v1 (preliminary)",
            "Base (preliminary)",
            "RAG few-shot (preliminary)",
        }, table

        comp = page.locator("#lb-comparisons").inner_text()
        assert "Only 4 decisive votes between LoRA: v1 and Base so far, too few to say" in comp, comp
        assert comp.count("more votes would settle a 10-point difference") == 3
        assert "lora:" not in comp and "rag " not in comp

        page.get_by_text("Pairwise table").click()
        pairs = page.locator("#lb-pairs")
        pairs.get_by_text("Votes still needed").wait_for(timeout=10_000)
        assert "Holm-adjusted p" in pairs.inner_text()
        assert "LoRA: v1 vs Base" in pairs.inner_text()
        assert "75% (" in pairs.inner_text()  # 3 of 4 decisive, with its Wilson interval

        page.get_by_text("How the verdicts are decided").click()
        help_el = page.locator("#lb-help")
        help_el.get_by_text("lora:<name>").wait_for(timeout=10_000)  # not swallowed as an HTML tag
        assert "2*asin(sqrt(p)) - 2*asin(sqrt(0.5))" in help_el.inner_text()  # no italics eating the asterisks
        assert help_el.locator("em").count() == 0
        assert (
            "Base" in page.locator("#lb-verdicts").inner_text()
            and "lora:" not in page.locator("#lb-verdicts").inner_text()
        )
