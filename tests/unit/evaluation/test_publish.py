"""Publishing an adapter: model card, dry run (CLI), the offline / no-token sentences, and the upload calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.ledger import Ledger, LedgerRow
from evaluation.publish import PublishError, build_model_card, publish, upload_files
from evaluation.publish import main as publish_main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def adapter(tmp_path):
    d = tmp_path / "adapters" / "my-lora"
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text(
        json.dumps(
            {
                "base_model_name_or_path": "Qwen/Qwen3-8B",
                "r": 16,
                "lora_alpha": 16,
                "lora_dropout": 0.1,
                "target_modules": ["q_proj", "v_proj"],
            }
        )
    )
    (d / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    (d / "tokenizer.json").write_text("{}")
    (d / "training_config.yaml").write_text("learning_rate: 0.0002\nepochs: 2\nrank: 16\nseed: 42\n")
    (d / "dataset.json").write_text(
        json.dumps(
            {
                "source": "/data/datasets/replies/pairs.jsonl",
                "kind": "jsonl",
                "sha256": "ab" * 32,
                "n_train": 900,
                "n_eval": 100,
            }
        )
    )
    (d / "metrics.json").write_text(
        json.dumps({"eval_loss": 1.234, "train_loss": 1.1, "global_step": 120, "quantized": "nf4 double-quant"})
    )
    (d / "optimizer.pt").write_bytes(b"x")  # training state: never uploaded
    (d / "checkpoints").mkdir()
    data = tmp_path / "data"
    report = tmp_path / "data" / "reports" / "20260101-000000-eval"
    report.mkdir(parents=True)
    (report / "report.json").write_text(
        json.dumps({"judge": {"label": "Claude (claude-sonnet-4-5)"}, "data": {"n_items": 72}})
    )
    Ledger(data).append(
        [
            LedgerRow(
                "e1",
                "eval",
                "lora:my-lora",
                "base",
                "success",
                {"win_rate": 0.71, "ci_low": 0.6, "ci_high": 0.8, "p_value": 0.002},
                str(report),
                "h",
            ),
            LedgerRow("e1", "eval", "lora:my-lora", "rag", "marginal", {"win_rate": 0.58}, str(report), "h"),
        ]
    )
    return tmp_path


def test_card_has_base_data_config_metrics_report_and_limitations(adapter):
    from evaluation.publish import _latest_eval

    d = adapter / "adapters" / "my-lora"
    card = build_model_card("my-lora", d, "me/my-lora", _latest_eval(adapter / "data", "my-lora"))
    assert card.startswith("---\n") and 'base_model: "Qwen/Qwen3-8B"' in card and "library_name: peft" in card
    assert "900 training pairs, 100 eval pairs" in card and "`pairs.jsonl`" in card
    assert "| r | 16 |" in card and "| learning_rate | 0.0002 |" in card and "q_proj, v_proj" in card
    assert "eval_loss: 1.234" in card
    assert "| base | 71.0% | 60.0% – 80.0% | 0.002 | success |" in card and "| rag | 58.0% |" in card
    assert "72 held-out tweets" in card and "Full report:" in card and "20260101-000000-eval" in card
    assert "## Limitations" in card and 'PeftModel.from_pretrained(base, "me/my-lora")' in card
    assert [p.name for p in upload_files(d)] == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "dataset.json",
        "metrics.json",
        "tokenizer.json",
        "training_config.yaml",
    ]


def test_dry_run_cli_writes_card_and_file_list(adapter):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HF_TOKEN", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "evaluation.publish",
            "--adapter",
            "my-lora",
            "--repo",
            "me/my-lora",
            "--dry-run",
            "--adapters-dir",
            str(adapter / "adapters"),
            "--data-dir",
            str(adapter / "data"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = adapter / "data" / "publish" / "my-lora"
    assert "Dry run" in proc.stdout and str(out / "README.md") in proc.stdout
    manifest = json.loads((out / "upload_manifest.json").read_text())
    names = [f["path"] for f in manifest["files"]]
    assert "README.md" in names and "adapter_model.safetensors" in names and "optimizer.pt" not in names
    assert manifest["repo_id"] == "me/my-lora" and manifest["private"] is True
    assert "# my-lora" in (out / "README.md").read_text()


def test_offline_or_no_token_is_one_sentence(adapter, monkeypatch):
    kw = dict(adapters_dir=adapter / "adapters", data_dir=adapter / "data")
    with pytest.raises(PublishError, match=r"offline mode \(HF_HUB_OFFLINE=1\)"):
        publish("my-lora", "me/my-lora", token="hf_x", offline=True, **kw)
    monkeypatch.setenv("HF_TOKEN", "hf_in_env")  # not read here: the app passes Settings.hf_token, the CLI its own
    with pytest.raises(PublishError) as exc:
        publish("my-lora", "me/my-lora", **kw)
    assert str(exc.value) == "Set HF_TOKEN (a Hugging Face write token) to publish, or use a dry run."
    with pytest.raises(PublishError, match="not a Hub repo id"):
        publish("my-lora", "no-slash", dry_run=True, **kw)
    with pytest.raises(PublishError, match="No adapter named 'ghost'"):
        publish("ghost", "me/x", dry_run=True, **kw)


class FakeApi:
    """Stands in for HfApi (passed in, not patched) and records what would reach the Hub."""

    def __init__(self, fail_status: int | None = None):
        self.calls: list[tuple] = []
        self.uploaded: dict[str, bytes] = {}
        self.fail_status = fail_status

    def create_repo(self, **kw):
        self.calls.append(("create_repo", kw))
        if self.fail_status:
            err = RuntimeError("denied")
            err.response = type("R", (), {"status_code": self.fail_status})()
            raise err
        return type("Url", (), {"url": f"https://huggingface.co/{kw['repo_id']}"})()

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw))
        folder = Path(kw["folder_path"])
        allow = kw.get("allow_patterns")
        self.uploaded = {
            str(p.relative_to(folder)): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file() and (allow is None or p.name in allow)
        }


def test_cli_reads_the_token_and_offline_mode_from_its_environment(adapter, monkeypatch, capsys):
    argv = ["--adapter", "my-lora", "--repo", "me/my-lora"]
    argv += ["--adapters-dir", str(adapter / "adapters"), "--data-dir", str(adapter / "data")]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert publish_main(argv) == 2 and "offline mode (HF_HUB_OFFLINE=1)" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    assert publish_main(argv) == 2 and "Set HF_TOKEN" in capsys.readouterr().err


def test_upload_creates_repo_and_uploads_the_staged_folder(adapter):
    api = FakeApi()
    res = publish(
        "lora:my-lora",
        "me/my-lora",
        adapters_dir=adapter / "adapters",
        data_dir=adapter / "data",
        token="hf_x",
        api=api,
    )
    (name1, kw1), (name2, kw2) = api.calls
    assert name1 == "create_repo" and kw1 == {
        "repo_id": "me/my-lora",
        "repo_type": "model",
        "private": True,
        "exist_ok": True,
    }
    assert name2 == "upload_folder" and kw2["repo_id"] == "me/my-lora"
    assert set(api.uploaded) == {
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "dataset.json",
        "metrics.json",
        "tokenizer.json",
        "training_config.yaml",
        "evaluation/report.json",
    }
    assert b"# my-lora" in api.uploaded["README.md"]
    assert not Path(kw2["folder_path"]).exists()  # staging removed
    assert res.url == "https://huggingface.co/me/my-lora" and not res.dry_run
    with pytest.raises(PublishError, match=r"refused the token .*HTTP 401"):
        publish(
            "my-lora",
            "me/my-lora",
            adapters_dir=adapter / "adapters",
            data_dir=adapter / "data",
            token="hf_x",
            api=FakeApi(fail_status=401),
        )
