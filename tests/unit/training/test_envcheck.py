"""The environment check on this (CPU) box: what is found, what a missing piece disables, the fix, the W&B mode."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import torch

from common.tracking import wandb_mode
from training.envcheck import _package, main, pinned_versions, run_checks


def test_cpu_box_report_names_what_is_missing_and_the_fix(tmp_path):
    rep = run_checks(tmp_path / "not-yet", tracking=wandb_mode({}))
    names = [c.name for c in rep.checks]
    for n in (
        "torch",
        "CUDA GPU",
        "bitsandbytes",
        "4-bit loading",
        "transformers",
        "peft",
        "trl",
        "accelerate",
        "liger-kernel",
        "W&B",
        "disk",
    ):
        assert n in names, n
    assert rep.get("torch").status == "ok" and torch.__version__ in rep.get("torch").detail
    assert not torch.cuda.is_available()
    cuda = rep.get("CUDA GPU")
    assert cuda.status == "warn" and "QLoRA" in cuda.disables and "GPU host" in cuda.fix
    four = rep.get("4-bit loading")
    assert four.status == "warn" and "only on CUDA" in four.detail and "cpu_dtype" in four.disables
    assert rep.get("bitsandbytes").status == "ok"  # installs on a CPU box too (requirements.txt pin)
    for n in ("peft", "trl", "transformers", "accelerate"):
        assert rep.get(n).status == "ok"
    wb = rep.get("W&B")
    assert "offline" in wb.detail and "wandb sync" in wb.detail and "WANDB_API_KEY" in wb.fix
    free = shutil.disk_usage(tmp_path).free / 1e9
    assert rep.facts["free_disk_gb"] == round(free, 1) or abs(rep.facts["free_disk_gb"] - free) < 1.0
    text = rep.text()
    assert "→ without it:" in text and "→ fix:" in text
    md = rep.markdown()
    assert md.startswith("| | check |") and md.count("\n") == len(rep.checks) + 1


def test_wandb_mode_online_with_key_and_disabled():
    assert "online" in run_checks(".", tracking=wandb_mode({"WANDB_API_KEY": "k"}), probe_4bit=False).get("W&B").detail
    c = run_checks(".", tracking=wandb_mode({"WANDB_MODE": "disabled"}), probe_4bit=False).get("W&B")
    assert c.status == "warn" and "disabled" in c.detail


def test_missing_package_says_what_it_disables_and_the_pinned_install():
    c = _package("nothere", "reply-arena-no-such-dist", {"reply-arena-no-such-dist": "1.2.3"}, "the frobnicator")
    assert (
        c.status == "missing"
        and c.disables == "the frobnicator"
        and c.fix == "pip install reply-arena-no-such-dist==1.2.3"
    )
    pins = pinned_versions()
    assert pins["wandb"] and pins["bitsandbytes"] and pins["torch"] == "2.13.0"


def test_cli_prints_the_report(capsys, tmp_path):
    assert main(["--data-dir", str(tmp_path), "--no-4bit-probe"]) == 0
    out = capsys.readouterr().out
    assert "environment check" in out and "checks ok" in out and "CUDA GPU" in out


def test_system_tab_reports_the_apps_wandb_mode(tmp_path):
    """The tab shows the mode Settings read at start-up (WANDB_MODE / WANDB_API_KEY), not a second env read."""
    from context import Settings

    import gradio as gr

    from security import AdminGate
    from security.session import COOKIE_NAME
    from training.envcheck_ui import build_system_tab

    ctx = SimpleNamespace(settings=Settings(data_dir=tmp_path, wandb_mode="disabled"), gate=AdminGate(password="pw"))
    with gr.Blocks() as demo:
        build_system_tab(ctx)
    on_check = next(f.fn for f in demo.fns.values() if f.name == "on_check")
    admin = SimpleNamespace(session_hash="boss", cookies={COOKIE_NAME: ctx.gate.login("pw", "127.0.0.1")})
    assert "disabled (WANDB_MODE=disabled)" in on_check(admin)
