"""The pretrained-checkpoint path: LoRA on a tiny random Llama/Qwen3 checkpoint saved to disk, and on one
converted from a Q4_1 GGUF file by `simgr checkpoint` (model/network/gguf.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gguf_helpers import tiny_llama, write_gguf

from model.config import ModelConfig, PromptConfig
from model.data.synthetic import random_sids
from model.export.bundle import Bundle
from model.export.export import write_bundle
from model.network.assembly import build_model
from model.network.backbone import build_preset_tokenizer
from model.network.gguf import convert_gguf
from model.network.prompt import collate
from model.network.windows import make_windows


def save_checkpoint(kind: str, path: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    if kind == "gguf":
        model, tok = tiny_llama()
        convert_gguf(write_gguf(model, tok, path.with_suffix(".gguf"), quantized=True), path)
        return path
    tok = build_preset_tokenizer([])
    common = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, intermediate_size=64, max_position_embeddings=256,
                  pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = (LlamaForCausalLM(LlamaConfig(**common)) if kind == "llama"
             else Qwen3ForCausalLM(Qwen3Config(head_dim=16, **common)))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("kind", ["llama", "qwen3", "gguf"])
def test_lora_trains_only_adapters_and_new_tokens_and_exports(kind: str, tmp_path: Path) -> None:
    ckpt = save_checkpoint(kind, tmp_path / "ckpt")
    sids = random_sids(20, seed=2)
    cfg = ModelConfig(backbone=str(ckpt), lora=True, lora_rank=4)
    built = build_model(cfg, PromptConfig(layout="tokens"), sids)
    model, vocab = built.model, built.vocab
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    assert all("lora_" in n or "trainable_tokens" in n for n in trainable), trainable
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    windows = [w for s in ([1, 2, 3, 4, 5], [6, 7, 8, 9]) for w in make_windows(s, vocab, stride=10)]
    batch = collate([w.prompt for w in windows], pad_id=vocab.pad_id, targets=[w.targets for w in windows])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        _, loss = model(batch)
        assert loss is not None
        loss.backward()
        opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed
    assert changed <= trainable
    assert any("trainable_tokens" in n for n in changed), "the new SID token rows must learn"

    # export merges LoRA + token deltas; the reloaded plain model gives the same user embeddings
    model.eval()
    with torch.inference_mode():
        ref = model.user_embeddings(batch._replace(targets=None))
    write_bundle(tmp_path / "bundle", model=model, tokenizer=built.tokenizer,
                 item_ids=[f"x{i}" for i in range(20)], sids=sids, titles=[None] * 20, popularity=list(range(20)))
    bundle = Bundle.load(tmp_path / "bundle")
    got = bundle.encode_users([[1, 2, 3, 4], [6, 7, 8]])  # the two windows' histories
    assert torch.allclose(torch.from_numpy(got), ref, atol=1e-4)
