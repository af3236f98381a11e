"""The LLM backbone: a named Qwen3 preset built from a config (random init, full training) or a local
Hugging Face checkpoint (pretrained, optionally with LoRA). Both come with a tokenizer that knows every
semantic-ID token. No hub access: presets build their own tokenizer with ``tokenizers``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.errors import SimGRError
from model.network.gguf import read_provenance

log = logging.getLogger(__name__)

PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Preset:
    hidden_size: int  # D, also the user/item embedding size
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int  # grouped-query attention, as Qwen3
    intermediate_size: int  # SwiGLU MLP width
    max_position_embeddings: int = 1024  # 20 items x 5 tokens + instruction fits easily

    def resized(self, *, layers: int = 0, width: int = 0) -> Preset:
        """This preset with ``layers`` blocks and/or hidden size ``width`` (0 keeps its own). A new width
        keeps the presets' proportions: 64-wide heads, half as many key/value heads for an even head count
        and one for an odd count (gcd(heads, heads // 2) gives both), a 4x MLP."""
        p = dataclasses.replace(self, num_hidden_layers=layers) if layers else self
        if not width:
            return p
        heads = max(1, width // 64)
        kv = math.gcd(heads, max(1, heads // 2))  # divides heads, as grouped-query attention needs
        return dataclasses.replace(p, hidden_size=width, num_attention_heads=heads, num_key_value_heads=kv,
                                   intermediate_size=4 * width)


PRESETS: dict[str, Preset] = {
    # for tests: a few thousand parameters, milliseconds per step
    "tiny": Preset(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                   intermediate_size=64),
    # trains on a CPU in minutes; the prototype that reached NDCG@10 0.080 on Instruments was this size
    "small": Preset(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=512),
    # twice small's width: item vectors with more room, ~2x small's step time on a CPU
    "medium": Preset(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                     intermediate_size=1024),
    # 1.5x medium's width, for a whole 2-core CPU: ~2x medium's step time
    "large": Preset(hidden_size=384, num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
                    intermediate_size=1536),
    # 4x medium's width, for a multi-core CPU with AMX and `--autocast bf16` (model/training/precision.py)
    "xlarge": Preset(hidden_size=512, num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=2,
                     intermediate_size=2048),
    # for GPUs: ~20M parameters in the blocks
    "base": Preset(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                   intermediate_size=1536),
}

_CORPUS = (
    "Here is the list of items the user interacted with, in order. Predict the next item: "
    "The user has interacted with items in chronological order. Can you predict the next possible item "
    "that the user may expect? Recommend an item for this user based on the history of purchases, views, "
    "ratings and clicks. 0 1 2 3 4 5 6 7 8 9 , . : ; ? ! ( ) [ ] - _ / "
)


def is_preset(backbone: str) -> bool:
    return backbone in PRESETS


def build_preset_tokenizer(sid_tokens: list[str]) -> Any:
    """A small byte-level BPE tokenizer (any instruction text encodes) plus one special token per code."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=[PAD_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD_TOKEN, eos_token=EOS_TOKEN)
    fast.add_tokens(sid_tokens, special_tokens=True)
    return fast


def _qwen3_config(preset: Preset, vocab_size: int, pad_id: int, dropout: float) -> Any:
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=preset.hidden_size,
        num_hidden_layers=preset.num_hidden_layers,
        num_attention_heads=preset.num_attention_heads,
        num_key_value_heads=preset.num_key_value_heads,
        head_dim=preset.hidden_size // preset.num_attention_heads,
        intermediate_size=preset.intermediate_size,
        max_position_embeddings=preset.max_position_embeddings,
        attention_dropout=dropout,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        use_cache=False,
    )


def _lora_targets(model: nn.Module, wanted: tuple[str, ...]) -> list[str]:
    """The configured target names that exist in the model; GPT-2 style names when none do."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    found = [t for t in wanted if t in names]
    if not found:
        found = [t for t in ("c_attn", "c_proj", "c_fc") if t in names]
    if not found:
        raise SimGRError(f"none of the LoRA target modules {list(wanted)} exist in the backbone")
    return found


def build_backbone(cfg: ModelConfig, sid_tokens: list[str], *, dropout: float = 0.0,
                   hidden_dropout: float = 0.0) -> tuple[nn.Module, Any]:
    """Returns (decoder without LM head, tokenizer with SID tokens). The decoder's input embedding rows
    for the SID tokens are what item embeddings aggregate. ``dropout``: attention dropout of a preset;
    ``hidden_dropout``: see ``add_hidden_dropout``."""
    from transformers import AutoModel, AutoTokenizer

    if is_preset(cfg.backbone):
        tokenizer = build_preset_tokenizer(sid_tokens)
        from transformers import Qwen3Model

        preset = PRESETS[cfg.backbone].resized(layers=cfg.layers, width=cfg.width)
        model_cfg = _qwen3_config(preset, len(tokenizer), tokenizer.pad_token_id, dropout)
        model_cfg._attn_implementation = "sdpa"
        backbone: nn.Module = Qwen3Model(model_cfg)
    else:
        path = Path(cfg.backbone)
        if sized := ", ".join(f"{k}={v}" for k, v in (("layers", cfg.layers), ("width", cfg.width)) if v):
            raise SimGRError(f"{sized} sizes a preset; checkpoint {cfg.backbone!r} keeps its own size")
        if not (path / "config.json").is_file():
            raise SimGRError(
                f"backbone {cfg.backbone!r} is neither a preset ({', '.join(PRESETS)}) "
                "nor a local Hugging Face checkpoint directory with config.json"
            )
        if (prov := read_provenance(path)) is not None:
            log.info("backbone %s: %s", path, prov.model_dump_json())
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        backbone = AutoModel.from_pretrained(path, local_files_only=True, attn_implementation="sdpa")
        new = [t for t in sid_tokens if t not in tokenizer.get_vocab()]
        if new:
            tokenizer.add_tokens(new, special_tokens=True)
            backbone.resize_token_embeddings(len(tokenizer))  # type: ignore[operator]
        backbone.config.use_cache = False  # type: ignore[union-attr]
    if hidden_dropout:
        add_hidden_dropout(backbone, hidden_dropout)
    if cfg.lora:
        backbone = apply_lora(backbone, cfg, tokenizer.convert_tokens_to_ids(sid_tokens))
    return backbone, tokenizer


RESIDUAL_BRANCH_ENDS = ("o_proj", "down_proj")  # the last projection of attention / MLP (Llama, Qwen names)


def add_hidden_dropout(backbone: nn.Module, p: float) -> int:
    """Dropout with rate ``p`` on the output of every attention and MLP block, before it joins the residual
    stream: GPT-2's ``resid_pdrop``, SASRec's hidden dropout. Qwen3 and Llama have attention dropout only,
    so a model trained from scratch on a small catalogue overfits without it. Active in training mode only;
    returns the number of projections hooked (0 when the architecture names them otherwise)."""
    if not 0.0 <= p < 1.0:
        raise SimGRError(f"hidden dropout must be in [0, 1), got {p}")
    hooked = 0
    for name, module in backbone.named_modules():
        if name.rsplit(".", 1)[-1] in RESIDUAL_BRANCH_ENDS:
            module.register_forward_hook(lambda mod, _args, out: F.dropout(out, p, mod.training))
            hooked += 1
    return hooked


def apply_lora(backbone: nn.Module, cfg: ModelConfig, sid_token_ids: list[int]) -> nn.Module:
    """LoRA on the projections; the new SID token rows stay trainable (peft trainable tokens)."""
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(
        r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=_lora_targets(backbone, cfg.lora_target_modules),
        trainable_token_indices=list(sid_token_ids),
    )
    return get_peft_model(backbone, lcfg)  # type: ignore[arg-type]


def merge_lora(backbone: nn.Module) -> nn.Module:
    """Fold LoRA and trainable-token deltas into plain weights (for export)."""
    if hasattr(backbone, "merge_and_unload"):
        return backbone.merge_and_unload()  # type: ignore[no-any-return,operator]
    return backbone


KV = tuple[torch.Tensor, torch.Tensor]  # one layer's keys and values, each (B, H_kv, K, Dh)


def forward_with_cache(backbone: nn.Module, kv: list[KV] | None, **inputs: Any) -> tuple[torch.Tensor, list[KV]]:
    """Run the decoder on top of the per-layer keys/values ``kv`` (None: an empty cache); returns the last
    hidden states and the grown keys/values. The one place that knows transformers' cache API: the
    argument and output field are ``cache`` in late 5.x releases and ``past_key_values`` before."""
    from transformers import DynamicCache

    get_base = getattr(backbone, "get_base_model", None)  # through a peft wrapper
    base = get_base() if callable(get_base) else backbone
    name = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"
    cache = DynamicCache() if kv is None else DynamicCache(ddp_cache_data=kv)
    out = backbone(use_cache=True, **inputs, **{name: cache})
    grown = out[name] if name == "cache" else out.past_key_values
    return out.last_hidden_state, [(layer.keys, layer.values) for layer in grown.layers]
