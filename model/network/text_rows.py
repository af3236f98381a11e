"""Frozen text rows beside the learned code rows (``ModelConfig.text_rows``), so that items added after
training are scored the way one model was trained to score them.

An item's embedding is the aggregate of its code-token rows. Learned rows encode interactions, which an
item added while serving has none of; frozen rows encode the text its codes came from, which it has.
With text rows, every semantic code c of RQ-VAE level l also owns a fixed row T_l[c] = s * P @ C_l[c]
(the projection of its codebook vector that ``code_init`` uses, scaled to the backbone's row norm), and

    e_i = mean_{l semantic} T_l[c_l(i)]  +  m_i * aggregate_l(E[c_l(i)])        (N, D), then L2-normalised

where m_i = 1 for a trained item and m_i = 0 for an item added later. While training, m_i is 0 for a
random ``text_only_share`` of the items each time the item table is built (the targets' and the history
inputs' alike), as DropoutNet drops the preference input (Volkovs et al., "DropoutNet: Addressing Cold
Start in Recommender Systems", NeurIPS 2017): the decoder learns to rank items by their text alone as
well as by text plus interactions, and an added item is scored by exactly the text-only embedding the
model saw in training. The learned code rows start at zero, so every item starts at its text.

The uniqueness level has no text: it contributes only through the learned rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from model.network.code_init import embedding_scale, level_token_ids, projected_codebooks


class TextRows(nn.Module):
    """A fixed (R+1, D) table of text rows, one per semantic code token (the last row is zero), and the
    DropoutNet-style mix with the learned part of the item embedding."""

    def __init__(self, *, row_of: torch.Tensor, table: torch.Tensor, has_text: torch.Tensor,
                 text_only_share: float) -> None:
        super().__init__()
        if not 0.0 <= text_only_share < 1.0:
            raise ValueError(f"text_only_share must be in [0, 1), got {text_only_share}")
        self.text_only_share = text_only_share
        self.row_of: torch.Tensor
        self.table: torch.Tensor
        self.has_text: torch.Tensor
        self.register_buffer("row_of", row_of.long())  # (V,) token id -> row of ``table`` (R = no text)
        self.register_buffer("table", table.float())  # (R+1, D)
        self.register_buffer("has_text", has_text.bool())  # (L,) which SID levels carry text

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], *, text_only_share: float) -> TextRows:
        """Rebuild from ``state_dict()`` tensors (a bundle's ``model/text_rows.safetensors``)."""
        return cls(row_of=state["row_of"], table=state["table"], has_text=state["has_text"],
                   text_only_share=text_only_share)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(M, L) SID token ids -> (M, D) mean text row over the semantic levels."""
        return self.table[self.row_of[tokens[:, self.has_text]]].mean(dim=1)  # (M, S, D) -> (M, D)

    def combine(self, tokens: torch.Tensor, learned: torch.Tensor) -> torch.Tensor:
        """(M, L) tokens, (M, D) learned aggregate -> (M, D) text + learned; while training, the learned part
        of a random ``text_only_share`` of the rows is dropped (an added item's embedding)."""
        text = self(tokens).to(learned.dtype)  # (M, D)
        if self.training and self.text_only_share > 0:
            keep = torch.rand(learned.shape[0], 1, device=learned.device) >= self.text_only_share  # (M, 1)
            learned = learned * keep.to(learned.dtype)
        return text + learned


@torch.no_grad()
def build_text_rows(tokenizer: Any, weight: torch.Tensor, codebooks: Sequence[np.ndarray], *, levels: int,
                    seed: int, text_only_share: float) -> TextRows:
    """Text rows for the first ``len(codebooks)`` of ``levels`` SID levels; also sets the learned code rows
    (every level's, ``weight`` (V, D) is the input embedding) to zero."""
    ids, rows = projected_codebooks(tokenizer, codebooks, dim=int(weight.shape[1]), seed=seed)
    rows = rows * embedding_scale(weight, rows)  # (R, D)
    row_of = torch.full((weight.shape[0],), len(ids), dtype=torch.long)
    row_of[ids] = torch.arange(len(ids))
    table = torch.cat([rows, rows.new_zeros(1, rows.shape[1])])  # (R+1, D)
    has_text = torch.arange(levels) < len(codebooks)
    for lvl in range(levels):
        weight[level_token_ids(tokenizer, lvl)] = 0.0
    return TextRows(row_of=row_of, table=table, has_text=has_text, text_only_share=text_only_share)
