"""Training tab: its field info is the TrainConfig help metadata (one text with the CLI), built in a real Blocks."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from security.auth import AdminGate
from training.config import field_help
from training.runner import RunManager
from training.ui import build_training_tab

FIELDS = {
    "rank": "rank",
    "alpha": "alpha",
    "learning rate": "learning_rate",
    "epochs": "epochs",
    "max steps (-1 = epochs)": "max_steps",
    "micro-batch": "micro_batch_size",
    "run name (empty = generated)": "run_name",
    "GPUs (e.g. 0,1)": "gpus",
    "Dataset (exported in the Data tab)": "dataset",
}


def test_training_form_info_is_the_config_help(tmp_path):
    ctx = SimpleNamespace(
        settings=SimpleNamespace(data_dir=tmp_path / "data", adapters_dir=tmp_path / "adapters"),
        runs=RunManager(tmp_path / "data", tmp_path / "adapters"),
        gate=AdminGate(password="pw"),
    )
    with gr.Blocks() as demo:
        build_training_tab(ctx)
    by_label = {b.label: b for b in demo.blocks.values() if getattr(b, "label", None) in FIELDS}
    assert set(by_label) == set(FIELDS)
    for label, name in FIELDS.items():
        assert by_label[label].info == field_help(name), label
    assert (
        "first visible GPU" in by_label["GPUs (e.g. 0,1)"].info
    )  # the old label said "all visible": wrong for gpus=None
