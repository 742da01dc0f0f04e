"""`python -m training.data.cli`: in process and as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.data.cli import main
from training.data.pairs import Pair
from training.data.review_store import ReviewStore

from .sample_data import ROOT, SAMPLE

# ------------------------------------------------------------------ CLI


def test_cli_funnel_in_process(sample: list[Pair], encoder, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "funnel.png"
    rc = main(
        [
            "funnel",
            str(SAMPLE),
            "--cache-dir",
            str(encoder.cache_dir),
            "--plot",
            str(plot),
            "--data-dir",
            str(tmp_path / "data"),
            "--dataset",
            "sample",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["funnel"]["in"] == 260 and out["funnel"]["out"] == 198
    assert out["funnel"]["dropped"]["near_duplicate"] == 6 and plot.stat().st_size > 1000
    assert ReviewStore(tmp_path / "data").progress("sample")["pending"] == 198


def test_cli_subprocess_import_and_error(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.data.cli",
            "import",
            str(ROOT / "tests/fixtures/apify_tweets.json"),
            "--out",
            str(tmp_path / "p.jsonl"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    rep = json.loads(ok.stdout)["report"]
    assert rep["format"] == "apify" and rep["n_pairs"] == 3 and rep["n_missing_parent"] == 1
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json}\n")
    err = subprocess.run(
        [sys.executable, "-m", "training.data.cli", "import", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert err.returncode == 2 and "bad.jsonl: line 1" in err.stderr and err.stdout == ""
