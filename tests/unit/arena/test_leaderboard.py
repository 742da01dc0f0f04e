"""Leaderboard CLI as users run it: a subprocess over a battles file or a data dir."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from arena.export import export_votes
from arena.store import VoteRecord, VoteStore

ROOT = Path(__file__).resolve().parents[3]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "arena.leaderboard", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def generated_battles(n: int = 300, seed: int = 0) -> list[dict]:
    """lora:casual beats base 80 % of the time; rag sits in between."""
    rng = random.Random(seed)
    strength = {"base": 0.0, "rag": 0.7, "lora:casual": 1.4}
    names = list(strength)
    out = []
    for i in range(n):
        a, b = rng.sample(names, 2)
        p_a = 1 / (1 + 10 ** (-(strength[a] - strength[b]) / 1.5))
        r = rng.random()
        winner = (
            "tie" if r < 0.05 else "tie (bothbad)" if r < 0.08 else ("model_a" if rng.random() < p_a else "model_b")
        )
        out.append(
            {
                "model_a": a,
                "model_b": b,
                "winner": winner,
                "len_a": rng.randint(20, 200),
                "len_b": rng.randint(20, 200),
                "battle_id": f"g{i}",
                "tstamp": 1.7e9 + i,
                "tweet": "extra fields are ignored",
                "judge": {"nested": [1, 2]},
            }
        )
    return out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_battles_file_json(tmp_path: Path) -> None:
    f = tmp_path / "battles.jsonl"
    write_jsonl(f, generated_battles())
    proc = run_cli("--battles", str(f), "--json", "--n-boot", "50")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    names = [c["name"] for c in out["contenders"]]
    assert sorted(names) == ["base", "lora:casual", "rag"]
    assert names[0] == "lora:casual" and names[-1] == "base"  # the generated strengths are recovered
    assert out["n_battles"] == 300
    assert {"pairs", "verdicts", "excluded"} <= set(out)
    assert out["excluded"]["total"] == 0


def test_battles_file_table(tmp_path: Path) -> None:
    f = tmp_path / "battles.jsonl"
    write_jsonl(f, generated_battles(60))
    proc = run_cli("--battles", str(f), "--n-boot", "20")
    assert proc.returncode == 0, proc.stderr
    assert "Contenders:" in proc.stdout and "lora:casual" in proc.stdout and "rating" in proc.stdout


@pytest.mark.parametrize(
    "bad_line,needle",
    [
        ("{not json", "malformed JSON"),
        ('["a", "b"]', "JSON object"),
        ('{"model_a": "base", "model_b": "rag", "winner": "model_c"}', "winner"),
        ('{"model_b": "rag", "winner": "tie"}', "model_a"),
    ],
)
def test_malformed_line_exits_2(tmp_path: Path, bad_line: str, needle: str) -> None:
    rows = generated_battles(5)
    f = tmp_path / "bad.jsonl"
    lines = [json.dumps(r) for r in rows]
    lines.insert(3, bad_line)  # line 4
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = run_cli("--battles", str(f), "--json")
    assert proc.returncode == 2
    assert f"{f}:4:" in proc.stderr and needle in proc.stderr
    assert proc.stdout == ""


def test_missing_inputs_exit_2(tmp_path: Path) -> None:
    assert run_cli("--battles", str(tmp_path / "nope.jsonl"), "--json").returncode == 2
    proc = run_cli("--data-dir", str(tmp_path / "empty"), "--json")
    assert proc.returncode == 2 and "votes.sqlite3" in proc.stderr
    assert not (tmp_path / "empty").exists()  # reading never creates a database


def test_data_dir_and_export_round_trip(tmp_path: Path) -> None:
    data = tmp_path / "data"
    battles = generated_battles(120, seed=3)
    vote_of = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "both_bad"}
    with VoteStore(data) as store:
        for i, b in enumerate(battles):
            store.add_vote(
                VoteRecord(
                    battle_id=b["battle_id"],
                    tweet="t",
                    contender_a=b["model_a"],
                    contender_b=b["model_b"],
                    reply_a="x" * b["len_a"],
                    reply_b="y" * b["len_b"],
                    vote=vote_of[b["winner"]],
                    session_hash="s",
                    client_hash="c",
                    app_version="t",
                    flags=("reveals_contender",) if i < 7 else (),
                    excluded=i < 7,
                )
            )
        export_votes(store, tmp_path / "export.jsonl", include_excluded=True)

    live = run_cli("--data-dir", str(data), "--json", "--n-boot", "30")
    assert live.returncode == 0, live.stderr
    live_out = json.loads(live.stdout)
    assert live_out["n_battles"] == 113
    assert live_out["excluded"]["total"] == 7
    assert live_out["excluded"]["by_flag"] == {"reveals_contender": 7}

    # The exported file (with excluded rows marked) ranks exactly like the live store.
    exported = run_cli("--battles", str(tmp_path / "export.jsonl"), "--json", "--n-boot", "30")
    assert exported.returncode == 0, exported.stderr
    exp_out = json.loads(exported.stdout)
    assert exp_out["contenders"] == live_out["contenders"]
    assert exp_out["excluded"]["total"] == 7
    with_all = json.loads(
        run_cli("--battles", str(tmp_path / "export.jsonl"), "--json", "--n-boot", "0", "--include-excluded").stdout
    )
    assert with_all["n_battles"] == 120
