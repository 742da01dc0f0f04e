"""Messages shown to users never carry server temp paths; the public page never says whether a judge key is set."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from security import AdminGate
from security.escape import hide_temp_paths


def test_upload_temp_path_becomes_the_file_name():
    tmp = tempfile.gettempdir()
    msg = f"{tmp}/gradio/3f9a1c0d/my_export.json: line 3: invalid JSON; also {tmp}/x.gz"
    out = hide_temp_paths(msg)
    assert tmp not in out and "my_export.json: line 3" in out and "x.gz" in out


def test_data_tab_error_hides_temp_path():
    from training.data.ui import _err

    err = _err(ValueError(f"{tempfile.gettempdir()}/gradio/abcd/tweets.jsonl: file is empty; expected JSON"))
    assert tempfile.gettempdir() not in err and "tweets.jsonl: file is empty" in err
    uploads = "/srv/gradio-uploads"  # GRADIO_TEMP_DIR elsewhere: Settings passes it down
    err = _err(ValueError(f"{uploads}/abcd/tweets.jsonl: file is empty"), uploads)
    assert uploads not in err and "tweets.jsonl: file is empty" in err
    assert hide_temp_paths(f"{uploads}/x/e.json: bad", [uploads]) == "e.json: bad"


def _evaluate_page_config(tmp_path: Path, key: str | None) -> str:
    from context import Settings

    from evaluation.ui import build_evaluate_tab

    ctx = SimpleNamespace(
        engine=None,
        settings=Settings(
            data_dir=tmp_path, adapters_dir=tmp_path, heldout=tmp_path / "h.jsonl", anthropic_api_key=key
        ),
        gate=AdminGate(password="pw", on_space=False),
        extras={},
        model_banner=lambda: "none",
    )
    with gr.Blocks() as demo:
        build_evaluate_tab(ctx)
    cfg = demo.get_config_file()
    # what a visitor's browser receives, minus the build-order component ids
    return json.dumps([(c["type"], c.get("props", {})) for c in cfg["components"]], sort_keys=True, default=str)


def test_anonymous_page_is_identical_with_and_without_the_key(tmp_path):
    with_key = _evaluate_page_config(tmp_path, "sk-test")
    without = _evaluate_page_config(tmp_path, None)
    assert "ANTHROPIC_API_KEY" not in with_key
    assert with_key == without
