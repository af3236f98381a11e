"""One pass over the prompt opening that every prompt of a batch shares (the instruction).

Every SimGR prompt starts with the same instruction: 19 tokens for the default one, against 7 history
items on an average Scientific prompt. In a batch of B prompts those first P positions have identical
inputs, so with causal attention their hidden states, keys and values are identical too. ``run_backbone``
computes them once, as a (1, P) sequence, and runs the rest of every prompt on top of that one copy
(expanded to B, not copied); the hidden states are the same as one full pass, up to float rounding.
In eval mode the prefix pass is also kept between calls (``PrefixMemo``), so serving pays for the
instruction once per loaded model rather than once per request.

Training computes the prefix once per batch with gradients; its dropout masks are then shared by the
batch's prompts (one draw instead of B), the only difference from separate passes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from model.network.backbone import KV, forward_with_cache
from model.network.prompt import PromptBatch


def shared_prefix_len(batch: PromptBatch) -> int:
    """Leading positions where every prompt has the same token, no item slot and no padding; at least one
    position per prompt is left for the main pass. Example: ids [[7, 8, 3], [7, 8, 5]] -> 2"""
    ids, slots, mask = batch.input_ids, batch.item_slots, batch.attention_mask
    same = (ids == ids[:1]).all(0) & (slots < 0).all(0) & (mask == 1).all(0)  # (T,)
    differs = (~same).nonzero()
    p = int(differs[0]) if len(differs) else int(ids.shape[1])
    return min(p, int(ids.shape[1]) - 1)


class PrefixMemo:
    """The last eval-mode prefix pass: (token ids, dtype, device) -> (hidden (1, P, D), per-layer K/V).
    One tuple, replaced whole, so a concurrent reader sees an old entry or a new one, never a mix."""

    def __init__(self) -> None:
        self.entry: tuple[tuple[Any, ...], tuple[torch.Tensor, list[KV]]] | None = None

    def clear(self) -> None:
        self.entry = None


def run_backbone(backbone: nn.Module, embeds: torch.Tensor, batch: PromptBatch, *, dropout: nn.Module,
                 memo: PrefixMemo | None, share: bool = True) -> torch.Tensor:
    """(B, T, D) final hidden states of ``embeds`` (B, T, D), the instruction computed once (see above).
    ``memo``: keep the prefix pass between calls (only valid while the weights cannot change);
    ``share=False``: one full pass per prompt (the reference path)."""
    b = int(embeds.shape[0])
    p = shared_prefix_len(batch) if share and (b > 1 or memo is not None) else 0
    if p < 2:  # nothing worth sharing
        out = backbone(inputs_embeds=dropout(embeds), attention_mask=batch.attention_mask)
        return out.last_hidden_state  # type: ignore[no-any-return]
    key = (tuple(batch.input_ids[0, :p].tolist()), embeds.dtype, embeds.device)
    entry = memo.entry if memo is not None else None
    if entry is not None and entry[0] == key:
        hidden, kv = entry[1]
    else:
        hidden, kv = forward_with_cache(backbone, None, inputs_embeds=dropout(embeds[:1, :p]),
                                        attention_mask=batch.attention_mask[:1, :p])
        if memo is not None:
            memo.entry = (key, (hidden, kv))
    shared = [(k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)) for k, v in kv]  # views, not copies
    rest, _ = forward_with_cache(backbone, shared, inputs_embeds=dropout(embeds[:, p:]),
                                 attention_mask=batch.attention_mask)
    return torch.cat([hidden.expand(b, -1, -1), rest], dim=1)
