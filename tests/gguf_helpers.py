"""Writes a tiny Llama as a GGUF file the way llama.cpp's converter does (its tensor names, its q/k row
order, a byte-level BPE tokenizer), so tests convert a real GGUF without downloading one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from model.network.backbone import build_preset_tokenizer

HEADS, KV_HEADS, HIDDEN, LAYERS = 4, 2, 64, 2  # rows of 64: two Q4_1 blocks of 32 per row


def tiny_llama() -> tuple[torch.nn.Module, object]:
    """(a random LlamaForCausalLM, its tokenizer), fixed by seed 0."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_preset_tokenizer([])
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=LAYERS,
                      num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=128,
                      tie_word_embeddings=True, rms_norm_eps=1e-5, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval(), tok


def _permute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's order of the q/k projection rows (rotary halves interleaved per head)."""
    return rows.reshape(n_head, 2, rows.shape[0] // n_head // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def _add_tokenizer(w: object, tok: object) -> None:
    spec = json.loads(tok.backend_tokenizer.to_str())  # type: ignore[attr-defined]
    tokens = [t for t, _ in sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])]
    special = {a["content"] for a in spec["added_tokens"]}
    w.add_tokenizer_model("gpt2")  # type: ignore[attr-defined]
    w.add_tokenizer_pre("default")  # type: ignore[attr-defined]
    w.add_token_list(tokens)  # type: ignore[attr-defined]
    w.add_token_types([3 if t in special else 1 for t in tokens])  # type: ignore[attr-defined]  # 3: control
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])  # type: ignore[attr-defined]
    w.add_bos_token_id(tok.eos_token_id)  # type: ignore[attr-defined]
    w.add_eos_token_id(tok.eos_token_id)  # type: ignore[attr-defined]
    w.add_pad_token_id(tok.pad_token_id)  # type: ignore[attr-defined]


def write_gguf(model: torch.nn.Module, tok: object, path: Path, *, quantized: bool) -> Path:
    """``model`` as a GGUF at ``path``: matrices in Q4_1 when ``quantized`` (else F32), norms in F32."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny")
    w.add_context_length(128)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(128)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    w.add_vocab_size(model.config.vocab_size)  # type: ignore[union-attr]
    _add_tokenizer(w, tok)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, LAYERS)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":  # tied to the embedding: llama.cpp writes it once
            continue
        x = tensor.numpy().astype(np.float32)
        if name.endswith(("q_proj.weight", "k_proj.weight")):
            x = _permute(x, HEADS if "q_proj" in name else KV_HEADS)
        gguf_name = names.get_name(name.rsplit(".", 1)[0]) + ".weight"
        if quantized and x.ndim == 2:
            q4 = gguf.GGMLQuantizationType.Q4_1
            w.add_tensor(gguf_name, gguf.quants.quantize(x, q4), raw_dtype=q4)
        else:
            w.add_tensor(gguf_name, x)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def q4_1_round_trip(tensor: torch.Tensor) -> torch.Tensor:
    """What a Q4_1 file holds for a matrix: its values quantized and de-quantized again (row-wise blocks, so
    the q/k row order does not change them)."""
    import gguf

    q4 = gguf.GGMLQuantizationType.Q4_1
    x = tensor.numpy().astype(np.float32)
    return torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(x, q4), q4).reshape(x.shape))
