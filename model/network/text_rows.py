"""Text rows beside the learned code rows (``ModelConfig.text_rows``), so that items added after training
are scored the way one model was trained to score them.

An item's embedding is the aggregate of its code-token rows. Learned rows encode interactions, which an
item added while serving has none of; text rows encode the text its codes came from, which it has. With
text rows, every semantic code c of RQ-VAE level l also owns the row T_l[c] = W @ C_l[c]: its fixed
codebook vector through one learned map W (D, c), which starts as the projection ``code_init`` uses,
scaled to the backbone's row norm. Then

    t_i = mean_{l semantic} T_l[c_l(i)]                                          (N, D)
    e_i = normalise(t_i + aggregate_l(E[c_l(i)]))        for a trained item
    e_i = g * normalise(t_i)                              for an item added later (text only)

with g one learned scalar: a text-only embedding lacks the learned part's share of the score, and g
calibrates it against the rest. While training, a random ``text_only_share`` of the items is embedded
text-only each time the item table is built (the targets' and the history inputs' alike), as DropoutNet
drops the preference input (Volkovs et al., "DropoutNet: Addressing Cold Start in Recommender Systems",
NeurIPS 2017): the decoder and W learn to rank items by their text alone as well as by text plus
interactions, and an added item is scored by exactly the text-only embedding the model saw in training.
W sees an item only through its codes' codebook vectors (D * c weights for every item), so what it learns
carries over to new code tuples. The learned code rows start at zero, so every item starts at its text.

The uniqueness level has no text: it contributes only through the learned rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from model.network.code_init import code_projection, embedding_scale, level_token_ids, semantic_codes


class TextRows(nn.Module):
    """The text rows of the semantic code tokens, T = latent @ W.T: each code's fixed RQ-VAE codebook vector
    (R, c) through one learned map W (D, c) that starts as the code_init projection. W has D * c weights and
    sees an item only through its codes' text, so what it learns carries over to items added later, as
    DropoutNet's content tower does. Also the mix with the learned part of the item embedding."""

    def __init__(self, *, row_of: torch.Tensor, latent: torch.Tensor, proj: torch.Tensor, has_text: torch.Tensor,
                 text_only_share: float, gain: torch.Tensor | None = None) -> None:
        super().__init__()
        if not 0.0 <= text_only_share < 1.0:
            raise ValueError(f"text_only_share must be in [0, 1), got {text_only_share}")
        self.text_only_share = text_only_share
        self.row_of: torch.Tensor
        self.latent: torch.Tensor
        self.has_text: torch.Tensor
        self.register_buffer("row_of", row_of.long())  # (V,) token id -> row of ``latent`` (R = no text)
        self.register_buffer("latent", latent.float())  # (R+1, c) codebook vectors, the last row zero
        self.register_buffer("has_text", has_text.bool())  # (L,) which SID levels carry text
        self.proj = nn.Parameter(proj.detach().clone().float())  # (D, c)
        # text-only embeddings lack the learned part's score; one learned scale calibrates them against the rest
        self.gain = nn.Parameter(torch.ones(()) if gain is None else gain.detach().clone().reshape(()))

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], *, text_only_share: float) -> TextRows:
        """Rebuild from ``state_dict()`` tensors (a bundle's ``model/text_rows.safetensors``)."""
        return cls(row_of=state["row_of"], latent=state["latent"], proj=state["proj"], has_text=state["has_text"],
                   gain=state["gain"], text_only_share=text_only_share)

    @property
    def table(self) -> torch.Tensor:
        """(R+1, D) the text row of every semantic code token (the last row zero)."""
        return self.latent @ self.proj.T

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(M, L) SID token ids -> (M, D) mean text row over the semantic levels."""
        return self.latent[self.row_of[tokens[:, self.has_text]]].mean(dim=1) @ self.proj.T  # (M, S, c) -> (M, D)

    def text_only(self, tokens: torch.Tensor, *, normalize: bool) -> torch.Tensor:
        """(M, L) tokens -> (M, D) text-only embeddings: g * normalise(text), g the learned gain."""
        text = self(tokens)  # (M, D)
        return self.gain * (F.normalize(text, dim=-1) if normalize else text)

    def combine(self, tokens: torch.Tensor, learned: torch.Tensor, *, normalize: bool) -> torch.Tensor:
        """(M, L) tokens, (M, D) learned aggregate -> (M, D) embeddings normalise(text + learned); while
        training, a random ``text_only_share`` of the rows is the text-only embedding (an added item's)."""
        text = self(tokens).to(learned.dtype)  # (M, D)
        full = text + learned
        full = F.normalize(full, dim=-1) if normalize else full
        if not (self.training and self.text_only_share > 0):
            return full
        drop = torch.rand(learned.shape[0], 1, device=learned.device) < self.text_only_share  # (M, 1)
        alone = self.gain.to(learned.dtype) * (F.normalize(text, dim=-1) if normalize else text)
        return torch.where(drop, alone, full)


@torch.no_grad()
def build_text_rows(tokenizer: Any, weight: torch.Tensor, codebooks: Sequence[np.ndarray], *, levels: int,
                    seed: int, text_only_share: float) -> TextRows:
    """Text rows for the first ``len(codebooks)`` of ``levels`` SID levels; also sets the learned code rows
    (every level's, ``weight`` (V, D) is the input embedding) to zero."""
    ids, latent = semantic_codes(tokenizer, codebooks)  # (R,), (R, c)
    proj = code_projection(dim=int(weight.shape[1]), code_dim=int(latent.shape[1]), seed=seed)  # (D, c)
    proj = proj * embedding_scale(weight, latent @ proj.T)
    row_of = torch.full((weight.shape[0],), len(ids), dtype=torch.long)
    row_of[ids] = torch.arange(len(ids))
    has_text = torch.arange(levels) < len(codebooks)
    for lvl in range(levels):
        weight[level_token_ids(tokenizer, lvl)] = 0.0
    return TextRows(row_of=row_of, latent=torch.cat([latent, latent.new_zeros(1, latent.shape[1])]), proj=proj,
                    has_text=has_text, text_only_share=text_only_share)
