"""The ONE prompt builder, shared by training, evaluation and serving so they cannot drift.

A prompt is the instruction followed by the user's last ``max_history`` items:
- layout ``tokens`` (the paper's): each item is written as its semantic-ID tokens;
- layout ``items``: each item takes one position whose input vector is the item's aggregated embedding.

Nothing follows the last item, so the hidden state at an item's last position is exactly the user
embedding of the history ending with that item. Training exploits this: one causal pass over a window
scores every prefix at once (``Prompt.boundaries``).

Example (tokens layout, instruction ids [7, 8], item 3 -> SID ids [101, 205], item 5 -> [102, 206]):
    build_prompt([3, 5], vocab) -> input_ids [7, 8, 101, 205, 102, 206], boundaries [3, 5]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from model.config import PromptConfig


@dataclass(frozen=True, eq=False)
class PromptVocab:
    """What the builder needs from the tokenizer, resolved once."""

    cfg: PromptConfig
    instruction_ids: tuple[int, ...]  # the tokenized instruction (with BOS if the tokenizer adds one)
    sid_token_ids: np.ndarray  # (N, L) int64 token id of each item's semantic-ID tokens (any (N, L) ints given)
    pad_id: int  # right padding; also the placeholder id under item slots

    def __post_init__(self) -> None:
        table = np.asarray(self.sid_token_ids, dtype=np.int64)
        object.__setattr__(self, "sid_token_ids", table.reshape(len(table), -1) if table.size else table.reshape(0, 0))

    @classmethod
    def from_tokenizer(cls, tokenizer: object, sids: Sequence[Sequence[str]], cfg: PromptConfig) -> PromptVocab:
        ids = tokenizer(cfg.instruction)["input_ids"]  # type: ignore[operator]
        table = [tokenizer.convert_tokens_to_ids(list(s)) for s in sids]  # type: ignore[attr-defined]
        return cls(cfg=cfg, instruction_ids=tuple(ids), sid_token_ids=np.asarray(table, dtype=np.int64),
                   pad_id=int(tokenizer.pad_token_id))  # type: ignore[attr-defined]

    @property
    def n_items(self) -> int:
        return len(self.sid_token_ids)


class Prompt(NamedTuple):
    input_ids: list[int]  # (T,) token ids; pad_id under item slots
    item_slots: list[int]  # (T,) item index at an item slot, -1 elsewhere (always -1 for layout tokens)
    boundaries: list[int]  # position of the last input of each history item, in history order


def build_prompt(history: Sequence[int], vocab: PromptVocab) -> Prompt:
    """Instruction + the last ``max_history`` items of ``history`` (item indices, oldest first)."""
    items = list(history)[-vocab.cfg.max_history:] if vocab.cfg.max_history > 0 else list(history)
    input_ids = list(vocab.instruction_ids)
    item_slots = [-1] * len(input_ids)
    boundaries: list[int] = []
    for item in items:
        if vocab.cfg.layout == "tokens":
            sid = vocab.sid_token_ids[item].tolist()
            input_ids.extend(sid)
            item_slots.extend([-1] * len(sid))
        else:
            input_ids.append(vocab.pad_id)
            item_slots.append(item)
        boundaries.append(len(input_ids) - 1)
    return Prompt(input_ids, item_slots, boundaries)


class PromptBatch(NamedTuple):
    input_ids: torch.Tensor  # (B, T) long, right-padded
    attention_mask: torch.Tensor  # (B, T) long, 1 on real positions
    item_slots: torch.Tensor  # (B, T) long, -1 where the input is a token
    last: torch.Tensor  # (B,) long, position of the last real input (the user embedding position)
    targets: torch.Tensor | None  # (B, T) long, target item at loss positions, -100 elsewhere

    def to(self, device: torch.device | str) -> PromptBatch:
        t = self.targets.to(device) if self.targets is not None else None
        return PromptBatch(self.input_ids.to(device), self.attention_mask.to(device),
                           self.item_slots.to(device), self.last.to(device), t)


def collate(prompts: Sequence[Prompt], *, pad_id: int,
            targets: Sequence[Sequence[tuple[int, int]]] | None = None) -> PromptBatch:
    """Right-pad prompts into tensors. ``targets[b]`` lists (position, item) loss targets of prompt b.
    Right padding never changes a causal model's hidden states at real positions."""
    bsz, t_max = len(prompts), max(len(p.input_ids) for p in prompts)
    input_ids = torch.full((bsz, t_max), pad_id, dtype=torch.long)
    mask = torch.zeros((bsz, t_max), dtype=torch.long)
    slots = torch.full((bsz, t_max), -1, dtype=torch.long)
    for b, p in enumerate(prompts):
        n = len(p.input_ids)
        input_ids[b, :n] = torch.tensor(p.input_ids)
        slots[b, :n] = torch.tensor(p.item_slots)
        mask[b, :n] = 1
    last = mask.sum(1) - 1
    tgt = None
    if targets is not None:
        tgt = torch.full((bsz, t_max), -100, dtype=torch.long)
        for b, pairs in enumerate(targets):
            for pos, item in pairs:
                tgt[b, pos] = item
    return PromptBatch(input_ids, mask, slots, last, tgt)


def by_length(histories: Sequence[Sequence[int]], batch_size: int, *, keep: int) -> list[np.ndarray]:
    """Users in batches of ``batch_size`` with similar history lengths (the last ``keep`` items count), so
    a right-padded batch is mostly real positions; every user once. Callers write results back by index.

    by_length([[1, 2, 3], [4], [5, 6]], 2, keep=20) -> [array([1, 2]), array([0])]"""
    lengths = np.array([min(len(h), keep) for h in histories], dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
