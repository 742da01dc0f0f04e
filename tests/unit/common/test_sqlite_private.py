"""Every SQLite file the app writes (votes, reviews, sessions, runs, ledger) is 0600, with its -wal/-shm files."""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path

from arena.store import VoteStore
from common.sqlite import private_db
from evaluation.ledger import Ledger
from security import SecurityDB
from training.data.review_store import ReviewStore
from training.runner import Registry

ROOT = Path(__file__).resolve().parents[3]


def _modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir() if ".sqlite3" in p.name}


def test_stores_create_private_files(tmp_path):
    old = os.umask(0o022)  # a typical umask: files would be 0644 without the fix
    try:
        vs = VoteStore(tmp_path)
        ReviewStore(tmp_path)
        SecurityDB(tmp_path)
        Ledger(tmp_path)
        Registry(tmp_path / "runs.sqlite3")
    finally:
        os.umask(old)
    modes = _modes(tmp_path)
    assert {"votes.sqlite3", "reviews.sqlite3", "security.sqlite3", "runs.sqlite3"} <= set(modes)
    assert any(n.endswith("-wal") for n in modes)  # WAL side files are covered too
    assert modes == {n: 0o600 for n in modes}, modes
    vs.close()


def test_existing_world_readable_file_is_tightened(tmp_path):
    p = tmp_path / "old.sqlite3"
    p.write_bytes(b"")
    os.chmod(p, 0o644)
    private_db(p)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_every_sqlite_connect_in_the_app_goes_through_private_db():
    offenders = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {"tests", "bench", ".venv"} or ".venv" in rel.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "connect"
                and getattr(node.func.value, "id", "") == "sqlite3"
            ):
                arg = node.args[0] if node.args else None
                ok = (isinstance(arg, ast.Call) and getattr(arg.func, "id", "") == "private_db") or (
                    isinstance(arg, ast.Name) and arg.id == "target"
                )  # security/store.py: private_db(...) or :memory:
                if not ok:
                    offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, offenders
