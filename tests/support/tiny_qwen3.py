"""A tiny random Qwen3 model with a locally trained BPE tokenizer and the Qwen3-style template (no downloads).

The tokenizer copies Qwen2/Qwen3's pre-tokenizer (its split regex + byte-level BPE), special tokens
<|endoftext|> <|im_start|> <|im_end|> and the non-special added tokens <think> </think>, so chat rendering and
tokenization behave like the real Qwen3-8B's at a size that trains in seconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "assets" / "qwen3_chat_template.jinja"
# Qwen2/Qwen3 tokenizer.json pre-tokenizer pattern.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus() -> list[str]:
    from generation.prompts import SYSTEM_PROMPT, user_message

    lines = [SYSTEM_PROMPT, user_message("Coffee before code?"), "system user assistant", "<think>\n\n</think>\n\n"]
    with open(ROOT / "assets" / "sample_pairs.jsonl") as f:
        for i, line in enumerate(f):
            if i >= 120:
                break
            row = json.loads(line)
            lines += [row["tweet"], row["reply"]]
    return lines


def build_tokenizer(tmp_dir: str | Path | None = None, vocab_size: int = 700):
    """Train the BPE (about a second) and wrap it as a PreTrainedTokenizerFast with the Qwen3-style chat template."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(_corpus(), trainer=trainer)
    tk.add_tokens(
        [
            AddedToken("<think>", special=False, normalized=False),
            AddedToken("</think>", special=False, normalized=False),
        ]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        chat_template=TEMPLATE.read_text(),
    )
    tok.padding_side = "right"
    if tmp_dir is not None:
        tok.save_pretrained(str(tmp_dir))
    return tok


def build_model(tokenizer, seed: int = 0, hidden: int = 64, init_std: float = 0.02):
    """A 2-layer Qwen3 (hidden 64, 4 heads, 2 KV heads, head_dim 16) with random weights; fp32 on the CPU.

    `hidden` changes the layer shapes (for adapter-mismatch tests); the intermediate size follows it (2x).
    `init_std` 0.02 is Qwen3's initializer; with it the frozen tied embeddings are so small that LoRA alone can barely
    move the logits, so LoRA-training tests use a larger one (trained embeddings are that large too).
    """
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    cfg = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=2 * hidden,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=im_end,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        initializer_range=init_std,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(cfg)
    model.generation_config.eos_token_id = im_end
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def save_tiny_qwen3(out_dir: str | Path, seed: int = 0, init_std: float = 0.02) -> Path:
    """Write tokenizer + model to `out_dir` (a folder load_base / --base-model accepts); returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out)
    build_model(tok, seed, init_std=init_std).save_pretrained(str(out))
    return out
