"""Deployable model: a LoRA adapter merged into the tiny random Qwen3 (real PEFT merge, real safetensors), the merged
folder loaded by the app's own loader as a base, the model card with the evaluation table, and publish's dry run
listing exactly what would be sent (adapter repo + report + merged repo)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from evaluation import publish as publish_mod
from evaluation.export_model import ExportError, export_model
from evaluation.ledger import Ledger, LedgerRow
from evaluation.publish import PublishError, publish
from generation.config import ModelConfig
from generation.loader import load_base
from tests.support.tiny_qwen3 import save_tiny_qwen3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    base_dir = save_tiny_qwen3(root / "tiny")
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    torch.manual_seed(3)
    pm = get_peft_model(
        base,
        LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
        ),
    )
    adir = root / "adapters" / "my-lora"
    pm.save_pretrained(str(adir))
    cfg = json.loads((adir / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(base_dir)
    (adir / "adapter_config.json").write_text(json.dumps(cfg))
    AutoTokenizer.from_pretrained(str(base_dir)).save_pretrained(str(adir))
    (adir / "metrics.json").write_text(json.dumps({"eval_loss": 1.5, "global_step": 12}))
    (adir / "optimizer.pt").write_bytes(b"x")  # training state: never exported or sent
    data = root / "data"
    report = data / "reports" / "20261130-000000-eval"
    report.mkdir(parents=True)
    (report / "report.json").write_text(json.dumps({"judge": {"label": "local judge"}, "data": {"n_items": 40}}))
    (report / "report.md").write_text("# Evaluation\n")
    Ledger(data).append(
        [
            LedgerRow(
                "e1",
                "eval",
                "lora:my-lora",
                "base",
                "success",
                {"win_rate": 0.66, "ci_low": 0.55, "ci_high": 0.77, "p_value": 0.004},
                str(report),
                "h",
            )
        ]
    )
    return root, base_dir, adir, data


def _logits(model, tok, text="what do you think about pineapple pizza"):
    ids = tok(text, return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits[:, -1].float()


def test_merged_fp32_matches_base_plus_adapter_and_loads_as_the_apps_base(setup):
    root, base_dir, adir, data = setup
    res = export_model("lora:my-lora", adapters_dir=root / "adapters", data_dir=data, dtype="float32")
    m = res.merged_dir
    assert m == data / "exports" / "my-lora" / "merged"
    assert (m / "config.json").is_file() and list(m.glob("*.safetensors")) and (m / "tokenizer.json").is_file()
    assert res.max_abs_logit_diff < 1e-4
    assert not [p for p in m.parent.iterdir() if p.name.startswith(".")]  # no temp folders left
    card = (m / "README.md").read_text()
    assert "library_name: transformers" in card and "# my-lora (merged)" in card
    assert "| base | 66.0% | 55.0% – 77.0% | 0.004 | success |" in card and "40 held-out tweets" in card
    assert "AutoModelForCausalLM.from_pretrained" in card and "PeftModel" not in card
    a = res.adapter_dir
    assert (a / "adapter_model.safetensors").is_file() and not (a / "optimizer.pt").exists()
    assert "library_name: peft" in (a / "README.md").read_text()
    exp = json.loads((m.parent / "export.json").read_text())
    assert exp["adapter"] == "my-lora" and exp["dtype"] == "float32"

    # the app's own loader takes the merged folder as a base; it answers like base + adapter
    loaded = load_base(ModelConfig(base_model=str(m), device="cpu", cpu_dtype="float32"))
    ref_base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    ref = PeftModel.from_pretrained(ref_base, str(adir)).eval()
    tok = loaded.tokenizer
    assert torch.allclose(_logits(loaded.model, tok), _logits(ref, tok), atol=1e-4)
    plain = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32).eval()
    assert not torch.allclose(_logits(plain, tok), _logits(ref, tok), atol=1e-3)  # the adapter does change the model
    ids = tok("tabs or spaces", return_tensors="pt")
    g1 = loaded.model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    g2 = ref.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert g1.tolist() == g2.tolist()


def test_default_export_is_bf16_safetensors(setup):
    root, _, _, data = setup
    res = export_model("my-lora", adapters_dir=root / "adapters", data_dir=data)
    assert res.dtype == "bfloat16"
    shard = sorted(res.merged_dir.glob("*.safetensors"))[0]
    with safe_open(str(shard), "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes == {torch.bfloat16}
    assert "lora_" not in " ".join(safe_open(str(shard), "pt").keys())  # merged: no adapter weights left


def test_bad_input_is_one_sentence_and_writes_nothing(setup, tmp_path):
    root, _, _, data = setup
    with pytest.raises(ExportError, match="not a PEFT adapter"):
        export_model("ghost", adapters_dir=root / "adapters", data_dir=tmp_path)
    with pytest.raises(ExportError, match="does not exist"):
        export_model("my-lora", adapters_dir=root / "adapters", data_dir=tmp_path, base=str(tmp_path / "nope"))
    with pytest.raises(ExportError, match="dtype"):
        export_model("my-lora", adapters_dir=root / "adapters", data_dir=tmp_path, dtype="int3")
    assert not (tmp_path / "exports" / "my-lora" / "merged").exists()


def test_publish_dry_run_lists_adapter_report_and_merged_files(setup, capsys, monkeypatch):
    root, _, _, data = setup
    if not (data / "exports" / "my-lora" / "merged").is_dir():
        export_model("my-lora", adapters_dir=root / "adapters", data_dir=data)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    rc = publish_mod.main(
        [
            "--adapter",
            "my-lora",
            "--repo",
            "me/my-lora",
            "--merged-repo",
            "me/my-lora-merged",
            "--dry-run",
            "--adapters-dir",
            str(root / "adapters"),
            "--data-dir",
            str(data),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "nothing was uploaded" in out
    man = json.loads((data / "publish" / "my-lora" / "upload_manifest.json").read_text())
    sent = {f["path"] for f in man["files"]}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
        "evaluation/report.json",
        "evaluation/report.md",
    } <= sent and "optimizer.pt" not in sent
    merged = {f["path"] for f in man["merged"]["files"]}
    assert man["merged"]["repo_id"] == "me/my-lora-merged" and "config.json" in merged and "README.md" in merged
    assert merged == {p.name for p in (data / "exports" / "my-lora" / "merged").iterdir()}
    merged_card = (data / "publish" / "my-lora" / "merged_README.md").read_text()
    assert '"me/my-lora-merged"' in merged_card and "- peft" not in merged_card  # the card names the repo it goes to
    for f in man["files"]:  # the CLI prints every file with its repo: exactly what would be sent
        assert f"me/my-lora: {f['path']}  ({f['bytes']:,} bytes)" in out
    for f in man["merged"]["files"]:
        assert f"me/my-lora-merged: {f['path']}  ({f['bytes']:,} bytes)" in out


def test_publish_merged_needs_an_export_and_uploads_both_repos(setup, tmp_path):
    root, _, _, data = setup
    with pytest.raises(PublishError, match="export it first"):
        publish(
            "my-lora",
            "me/my-lora",
            adapters_dir=root / "adapters",
            data_dir=tmp_path,
            dry_run=True,
            merged_repo="me/my-lora-merged",
        )
    if not (data / "exports" / "my-lora" / "merged").is_dir():
        export_model("my-lora", adapters_dir=root / "adapters", data_dir=data)

    class Recorder:  # stands in for HfApi (passed in, not patched): what would reach the Hub, per repo
        def __init__(self):
            self.repos, self.sent = [], {}

        def create_repo(self, **kw):
            self.repos.append(kw["repo_id"])
            return type("U", (), {"url": f"https://huggingface.co/{kw['repo_id']}"})()

        def upload_folder(self, **kw):
            folder, allow = Path(kw["folder_path"]), kw.get("allow_patterns")
            self.sent[kw["repo_id"]] = sorted(
                str(p.relative_to(folder))
                for p in folder.rglob("*")
                if p.is_file() and (allow is None or p.name in allow)
            )

    api = Recorder()
    res = publish(
        "my-lora",
        "me/my-lora",
        adapters_dir=root / "adapters",
        data_dir=data,
        token="hf_x",
        api=api,
        merged_repo="me/my-lora-merged",
    )
    man = res.extra["manifest"]
    assert api.repos == ["me/my-lora", "me/my-lora-merged"]
    assert api.sent["me/my-lora"] == sorted(f["path"] for f in man["files"])
    assert api.sent["me/my-lora-merged"] == sorted(f["path"] for f in man["merged"]["files"])
    assert "merged model to https://huggingface.co/me/my-lora-merged" in res.message
    assert not (data / "publish" / "my-lora" / ".stage-merged").exists()  # staging removed
