"""Assemble a SimGR model, its tokenizer and its prompt vocabulary from configs and semantic IDs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from model.config import ModelConfig, PromptConfig
from model.network.backbone import build_backbone
from model.network.model import SimGR
from model.network.prompt import PromptVocab
from model.semantic_ids.space import SidSpace


class Assembled(NamedTuple):
    model: SimGR
    tokenizer: Any
    vocab: PromptVocab


def sid_vocabulary(sids: Sequence[Sequence[str]]) -> list[str]:
    """Every distinct SID token, sorted by level then code: ['<a_0>', '<a_1>', ..., '<b_0>', ...]."""
    def key(tok: str) -> tuple[str, int]:
        level, _, code = tok.strip("<>").partition("_")
        return level, int(code) if code.isdigit() else -1
    return sorted({t for s in sids for t in s}, key=key)


def build_model(cfg: ModelConfig, prompt: PromptConfig, sids: Sequence[Sequence[str]], *,
                dropout: float = 0.0, hidden_dropout: float = 0.0, input_dropout: float = 0.0,
                code_dropout: float = 0.0, seed: int = 0, space: SidSpace | None = None) -> Assembled:
    """Random-init preset or local checkpoint, extended with the SID tokens of ``sids`` (N items x L) and,
    given a ``space``, with every code of every level, so items added later can be written."""
    torch.manual_seed(seed)
    tokens = sid_vocabulary(sids)
    if space is not None:
        known = set(tokens)
        tokens += [t for t in space.tokens() if t not in known]
    backbone, tokenizer = build_backbone(cfg, tokens, dropout=dropout, hidden_dropout=hidden_dropout)
    vocab = PromptVocab.from_tokenizer(tokenizer, sids, prompt)
    table = torch.tensor(vocab.sid_token_ids, dtype=torch.long)  # (N, L)
    model = SimGR(backbone=backbone, sid_token_ids=table, cfg=cfg, prompt=prompt, input_dropout=input_dropout,
                  code_dropout=code_dropout)
    return Assembled(model, tokenizer, vocab)
