"""LoRA adapters on one shared base model: discover by name, load once, switch without reloading the base."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import AdapterError

log = logging.getLogger(__name__)


@dataclass
class AdapterInfo:
    name: str
    path: Path
    base_model: str
    rank: int | None
    target_modules: list[str]


def _norm(name: str) -> str:
    return name.rstrip("/").split("/")[-1].lower()


def read_adapter(path: Path) -> AdapterInfo:
    cfg_file = Path(path) / "adapter_config.json"
    if not cfg_file.is_file():
        raise AdapterError(
            f"{path} is not a PEFT adapter (no adapter_config.json); train one in the Training tab or copy a saved "
            "adapter there."
        )
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as exc:
        raise AdapterError(
            f"Adapter {Path(path).name} has an unreadable adapter_config.json; re-save the adapter."
        ) from exc
    tm = cfg.get("target_modules") or []
    return AdapterInfo(
        Path(path).name,
        Path(path),
        cfg.get("base_model_name_or_path") or "",
        cfg.get("r"),
        sorted(tm) if isinstance(tm, list) else [str(tm)],
    )


def discover(adapters_dir: Path) -> dict[str, AdapterInfo]:
    """Adapters are sub-folders with an adapter_config.json; listed fresh each call so new runs appear without a
    restart."""
    found: dict[str, AdapterInfo] = {}
    d = Path(adapters_dir)
    if not d.is_dir():
        return found
    for sub in sorted(d.iterdir()):
        if (sub / "adapter_config.json").is_file():
            try:
                found[sub.name] = read_adapter(sub)
            except AdapterError as exc:
                log.warning("%s", exc)
    return found


class AdapterBank:
    """Owns the PEFT wrapper around the base model. Not thread-safe by itself: the Engine holds its lock around use."""

    def __init__(self, base_model, base_name: str, adapters_dir: Path):
        self.base = base_model
        self.base_name = base_name
        self.adapters_dir = Path(adapters_dir)
        self.peft_model = None
        self.loaded: set[str] = set()
        self._lock = threading.RLock()

    @property
    def model(self):
        return self.peft_model if self.peft_model is not None else self.base

    def available(self) -> list[str]:
        return sorted(discover(self.adapters_dir))

    def check_compatible(self, info: AdapterInfo) -> None:
        if info.base_model and self.base_name and _norm(info.base_model) != _norm(self.base_name):
            raise AdapterError(
                f"Adapter {info.name} was trained for base model {info.base_model}, but {self.base_name} is loaded; "
                f"start the app with --base-model {info.base_model} or pick another adapter."
            )

    def load(self, name: str) -> None:
        with self._lock:
            if name in self.loaded:
                return
            infos = discover(self.adapters_dir)
            if name not in infos:
                raise AdapterError(
                    f"No adapter named {name!r} in {self.adapters_dir}; available: "
                    f"{', '.join(sorted(infos)) or 'none'}."
                )
            info = infos[name]
            self.check_compatible(info)
            from peft import PeftModel

            try:
                if self.peft_model is None:
                    self.peft_model = PeftModel.from_pretrained(
                        self.base, str(info.path), adapter_name=name, is_trainable=False
                    )
                else:
                    self.peft_model.load_adapter(str(info.path), adapter_name=name, is_trainable=False)
            except (RuntimeError, ValueError, KeyError) as exc:
                msg = str(exc)
                if "size mismatch" in msg or "shape" in msg or "Target modules" in msg or "not found" in msg:
                    raise AdapterError(
                        f"Adapter {name} does not fit the loaded base model {self.base_name} (layer shapes or module "
                        "names differ); it was made for another base model."
                    ) from exc
                raise AdapterError(f"Adapter {name} could not be loaded: {msg.splitlines()[0][:160]}") from exc
            self.peft_model.eval()
            self.loaded.add(name)

    def activate(self, name: str | None):
        """Return a context manager: the named adapter active, or (None) all adapters disabled = the base model."""
        import contextlib

        if name is None:
            if self.peft_model is None:
                return contextlib.nullcontext(self.base)
            return _Disabled(self.peft_model)
        self.load(name)
        self.peft_model.set_adapter(name)
        return contextlib.nullcontext(self.peft_model)


class _Disabled:
    """Adapters off for the duration; the same weights in memory, so no reload."""

    def __init__(self, peft_model):
        self.pm = peft_model
        self._cm = None

    def __enter__(self):
        self._cm = self.pm.disable_adapter()
        self._cm.__enter__()
        return self.pm

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)
