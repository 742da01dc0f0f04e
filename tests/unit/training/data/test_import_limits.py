"""A gzip bomb (one huge JSON object) fails fast, with a clear sentence and bounded memory; nothing is imported."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.decompression import CappedDecompression
from training.data.importers import import_file

ROOT = Path(__file__).resolve().parents[4]
MB = 1 << 20


def _bomb(path: Path, mb: int, newline_free: bool = True) -> None:
    """One JSON object whose single string field is `mb` MB of 'a' (no newline anywhere)."""
    with gzip.open(path, "wb", compresslevel=6) as f:
        f.write(b'{"data": [{"id": "1", "text": "')
        block = b"a" * MB
        for _ in range(mb):
            f.write(block)
        f.write(b'"}]}')


def test_one_huge_object_fails_fast_with_bounded_memory(tmp_path):
    bomb = tmp_path / "export.json.gz"
    _bomb(bomb, 400)
    assert bomb.stat().st_size < 2 * MB
    code = (
        "import sys, time\n"
        "from training.data.importers import import_file\n"
        "t = time.time()\n"
        "try:\n"
        f"    import_file({str(bomb)!r})\n"
        "    print('IMPORTED')\n"
        "except ValueError as exc:\n"
        "    print('ERR', exc)\n"
        "print('SECONDS', time.time() - t)\n"
        # VmHWM is this process's own peak: ru_maxrss would carry over the (large) pytest parent's peak across
        # fork+exec, so the number depended on what the parent had loaded before.
        "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')][0].split()[1]\n"
        "print('MAXRSS_MB', int(hwm) / 1024)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300).stdout
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert "ERR" in lines, out
    assert "larger than 64 MB" in lines["ERR"] and "nothing was imported" in lines["ERR"]
    assert float(lines["SECONDS"]) < 20, out
    assert float(lines["MAXRSS_MB"]) < 500, out  # before: 885 MB and 112 s, and no error at all


def test_decompression_ratio_cap_stops_a_stream(tmp_path):
    src = tmp_path / "x.gz"
    with gzip.open(src, "wb") as f:
        f.write(b"\n" * (8 * MB))
    raw = CappedDecompression(gzip.open(src, "rb"), "x.gz", src.stat().st_size, limit=4 * MB)
    t = time.time()
    with pytest.raises(ValueError, match="x.gz: the compressed file expands to more than 4 MB"):
        while raw.read(MB):
            pass
    assert time.time() - t < 5


def test_normal_gzip_jsonl_still_imports(tmp_path):
    src = tmp_path / "pairs.jsonl.gz"
    rows = [{"pair_id": f"p{i}", "tweet": f"tweet number {i}?", "reply": f"reply number {i}!"} for i in range(50)]
    with gzip.open(src, "wt", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\n")
    res = import_file(src)
    assert len(res.pairs) == 50
