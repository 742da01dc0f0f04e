"""What this machine can do, and what each missing piece turns off, in words, with the fix.

    python -m training.envcheck [--data-dir data] [--json]

Checks torch / CUDA / each GPU's name and memory, bitsandbytes (and whether 4-bit loading really works here: a tiny
NF4 layer is quantized and run on the GPU), peft, trl, transformers, accelerate, liger-kernel, the W&B mode and the free
disk in the data dir. Versions are compared with requirements.txt's pins. Nothing is downloaded; the check takes a few
seconds, most of it importing torch. The admin "System" tab shows the same report.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import json
import os
import platform
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.tracking import wandb_mode

__all__ = ["Check", "EnvReport", "main", "run_checks"]

ROOT = Path(__file__).resolve().parent.parent
MIN_FREE_GB = 20.0  # Qwen3-8B in bf16 is ~16 GB, plus checkpoints and adapters


@dataclass
class Check:
    name: str
    status: str  # ok | warn | missing
    detail: str
    disables: str = ""  # what the app cannot do because of it (empty when ok)
    fix: str = ""

    @property
    def icon(self) -> str:
        return {"ok": "✅", "warn": "⚠️", "missing": "❌"}[self.status]


@dataclass
class EnvReport:
    checks: list[Check] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {"facts": self.facts, "checks": [asdict(c) for c in self.checks]}

    def text(self) -> str:
        lines = [f"Reply Arena environment check — {self.facts.get('python')} on {self.facts.get('platform')}", ""]
        width = max(len(c.name) for c in self.checks)
        for c in self.checks:
            lines.append(f"{c.status.upper():8} {c.name:<{width}}  {c.detail}")
            if c.disables:
                lines.append(f"{'':8} {'':<{width}}  → without it: {c.disables}")
            if c.fix:
                lines.append(f"{'':8} {'':<{width}}  → fix: {c.fix}")
        bad = [c for c in self.checks if c.status != "ok"]
        lines += [
            "",
            f"{len(self.checks) - len(bad)} of {len(self.checks)} checks ok"
            + (f"; {len(bad)} need attention (see 'without it' and 'fix' above)." if bad else "."),
        ]
        return "\n".join(lines)

    def markdown(self) -> str:
        rows = ["| | check | found | without it | fix |", "|---|---|---|---|---|"]
        for c in self.checks:
            cells = [c.icon, c.name, c.detail, c.disables or "–", c.fix or "–"]
            rows.append("| " + " | ".join(x.replace("|", "\\|").replace("\n", " ") for x in cells) + " |")
        return "\n".join(rows)


def pinned_versions(path: Path = ROOT / "requirements.txt") -> dict[str, str]:
    pins: dict[str, str] = {}
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s#;]+)", line)
            if m:
                pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    except OSError:
        pass
    return pins


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _package(name: str, dist: str, pins: dict[str, str], disables: str, required: bool = True) -> Check:
    v = _version(dist)
    pin = pins.get(dist.lower())
    install = f"pip install {dist}=={pin}" if pin else f"pip install {dist}"
    if v is None:
        return Check(name, "missing" if required else "warn", "not installed", disables, install)
    if pin and v != pin:
        return Check(name, "ok", f"{v} (requirements.txt pins {pin}; the GPU hosts run their own versions)")
    return Check(name, "ok", v)


def _four_bit_probe(cuda: bool) -> tuple[bool, str]:
    """Quantize a 64x64 layer to NF4 and run it, on the GPU (the only place the app loads 4-bit)."""
    if not cuda:
        return False, "no CUDA GPU: the app loads 4-bit (NF4) models only on CUDA"
    try:
        import bitsandbytes as bnb
        import torch

        layer = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4").to("cuda")
        x = torch.randn(2, 64, device="cuda", dtype=torch.bfloat16)
        y = layer(x)
        torch.cuda.synchronize()
        if not torch.isfinite(y).all():
            return False, "an NF4 test layer ran but returned NaN/inf"
        return True, f"an NF4 test layer ran on {torch.cuda.get_device_name(0)}"
    except Exception as exc:  # noqa: BLE001 - any failure here is the answer to the question
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


def _free_disk(path: Path) -> tuple[Path, float]:
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p, shutil.disk_usage(p).free / 1e9


def run_checks(data_dir: str | Path = "data", tracking: str = "offline", probe_4bit: bool = True) -> EnvReport:
    """``tracking``: the W&B mode runs will use (common.tracking.wandb_mode of the environment: the app's Settings in
    the System tab, this process's in ``main``)."""
    pins = pinned_versions()
    rep = EnvReport(facts={"python": platform.python_version(), "platform": platform.platform(terse=True)})
    add = rep.checks.append

    torch = None
    if importlib.util.find_spec("torch") is None:
        add(
            Check(
                "torch",
                "missing",
                "not installed",
                "everything with a model: Generate, Arena replies, training, evaluation",
                f"pip install torch=={pins.get('torch', '2.13.0')} (CPU) or the CUDA build on a GPU host",
            )
        )
    else:
        import torch

        add(
            Check(
                "torch",
                "ok",
                torch.__version__ + (f", CUDA build {torch.version.cuda}" if torch.version.cuda else ", CPU build"),
            )
        )
    cuda = bool(torch is not None and torch.cuda.is_available())
    if torch is not None:
        if cuda:
            gpus = []
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                gpus.append(f"{i}: {p.name}, {p.total_memory / 2**30:.0f} GiB")
            rep.facts["gpus"] = gpus
            add(Check("CUDA GPU", "ok", f"{len(gpus)} GPU(s) — " + "; ".join(gpus)))
        else:
            why = (
                "this torch is a CPU build"
                if not torch.version.cuda
                else "torch has CUDA but sees no GPU (driver / CUDA_VISIBLE_DEVICES)"
            )
            add(
                Check(
                    "CUDA GPU",
                    "warn",
                    f"none ({why})",
                    "QLoRA and training Qwen3-8B: here only the cpu-demo preset (embedded SmolLM2) and small models "
                    "train, and replies are generated on the CPU",
                    "run on a GPU host (NVIDIA driver, `nvidia-smi` lists the GPU) with a CUDA build of torch",
                )
            )

    bnb_check = _package(
        "bitsandbytes",
        "bitsandbytes",
        pins,
        "QLoRA (load_in_4bit): Qwen3-8B needs ~16 GB of GPU memory in bf16 instead of ~6 GB in NF4",
    )
    add(bnb_check)
    if bnb_check.status == "ok" and probe_4bit:
        ok, detail = _four_bit_probe(cuda)
        add(
            Check(
                "4-bit loading",
                "ok" if ok else "warn",
                ("works: " if ok else "not here: ") + detail,
                ""
                if ok
                else (
                    "load_in_4bit is ignored here: the model loads in cpu_dtype, so only small models fit"
                    if not cuda
                    else "QLoRA (load_in_4bit) runs fail at model loading; use load_in_4bit=false"
                ),
                ""
                if ok
                else (
                    "a CUDA GPU"
                    if not cuda
                    else "a bitsandbytes build that matches this CUDA "
                    "(pip install -U bitsandbytes), then run this check again"
                ),
            )
        )
    add(_package("transformers", "transformers", pins, "every model: loading, generation, training"))
    add(_package("peft", "peft", pins, "LoRA: training adapters and loading them in Generate / Arena / Evaluate"))
    add(_package("trl", "trl", pins, "DPO / KTO training from arena votes (the preference loop)"))
    add(_package("accelerate", "accelerate", pins, "multi-GPU training (accelerate launch) and device_map loading"))
    add(
        _package(
            "liger-kernel",
            "liger-kernel",
            pins,
            "Liger's fused kernels in the GPU fast path (more GPU memory on long sequences; training still works; "
            "nothing changes on a CPU box)",
            required=False,
        )
    )

    mode = tracking
    wb = _version("wandb")
    if wb is None:
        add(
            Check(
                "W&B",
                "warn",
                "wandb not installed",
                "W&B tracking (the local trainer_log.jsonl still records every run)",
                f"pip install wandb=={pins['wandb']}" if "wandb" in pins else "pip install wandb",
            )
        )
    elif mode == "online":
        add(Check("W&B", "ok", f"wandb {wb}, online (WANDB_API_KEY is set)"))
    elif mode == "offline":
        add(
            Check(
                "W&B",
                "ok",
                f"wandb {wb}, offline: runs are saved under each run folder; upload later with `wandb sync`",
                "",
                "set WANDB_API_KEY to log online",
            )
        )
    else:
        add(
            Check(
                "W&B",
                "warn",
                f"wandb {wb}, disabled (WANDB_MODE=disabled)",
                "W&B tracking (the local log still records runs)",
                "unset WANDB_MODE",
            )
        )

    where, free = _free_disk(Path(data_dir))
    rep.facts["free_disk_gb"] = round(free, 1)
    ok = free >= MIN_FREE_GB
    add(
        Check(
            "disk",
            "ok" if ok else "warn",
            f"{free:.1f} GB free at {where} (data dir {data_dir})",
            ""
            if ok
            else (
                f"room for Qwen3-8B (~16 GB) plus checkpoints; below {MIN_FREE_GB:.0f} GB a download or a save can fail"
            ),
            "" if ok else "free space, or start the app with --data-dir on a bigger disk",
        )
    )
    return rep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m training.envcheck", description="What this machine can do for Reply Arena."
    )
    ap.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    ap.add_argument("--no-4bit-probe", action="store_true", help="skip running the NF4 test layer")
    a = ap.parse_args(argv)
    rep = run_checks(a.data_dir, tracking=wandb_mode(os.environ), probe_4bit=not a.no_4bit_probe)
    print(json.dumps(rep.to_dict(), indent=1) if a.json else rep.text())
    return 1 if any(c.status == "missing" for c in rep.checks) else 0


if __name__ == "__main__":
    sys.exit(main())
