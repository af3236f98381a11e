"""Whole-sequence teacher forcing for the generative baselines (decoder-only TIGER / LC-Rec, Latte).

One causal pass over a user's window gives the next-token loss at every semantic-ID token of every target
item. The window is SimGR's (model/network/windows.py): ``build_prompt(history)`` with the user embedding
position of each prefix at its item boundary. Each target t adds a short *branch*, the inputs of its
answer but the last (``answer[:-1]``), placed after the boundary b of the item before it:

    position ids  prompt 0..n-1 ; branch of t: b+1 .. b+len(answer)-1
    attention     prompt -> causal over the prompt ; branch of t -> prompt[:b+1] and its own earlier tokens
    labels        at b: answer[0] ; at branch token k: answer[k+1]

So every target sees exactly the context it sees in the one-sequence-per-(history, target) path
(``collate_sequences``): the same tokens at the same positions, nothing from other targets' answers. The
losses are equal per target (tests/test_teacher_forcing.py), while the shared history is encoded once.

Example: prompt [I, s1, s2] (items layout, boundaries [1, 2]), answers a(s2) = [x, y], a(s3) = [u, v]:
    inputs   [I, s1, s2, x, u]   positions [0, 1, 2, 2, 3]   labels at s1 -> x, x -> y, s2 -> u, u -> v
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from model.network.windows import Window


class TreeBatch(NamedTuple):
    input_ids: torch.Tensor  # (B, T) long, right padded with the pad id
    item_slots: torch.Tensor  # (B, T) long, item index at an item slot, -1 elsewhere
    tree_mask: torch.Tensor  # (B, 1, T, T) bool, True where query position may attend key position
    position_ids: torch.Tensor  # (B, T) long
    last: torch.Tensor  # (B,) long, the prompt's last position (user embedding of the whole window)
    targets: torch.Tensor  # (B, T) long, next-token label, -100 where none
    target_of: torch.Tensor  # (B, T) long, index (in the batch) of the target a label belongs to, -1 elsewhere

    def to(self, device: torch.device | str) -> TreeBatch:
        return TreeBatch(*(t.to(device) for t in self))


class _Flat(NamedTuple):
    ids: list[int]  # (T,) inputs: the prompt, then the branches
    slots: list[int]  # (T,) item index at an item slot, -1 elsewhere
    pos: list[int]  # (T,) position ids
    branches: list[tuple[int, int, int]]  # (start, end, b): branch inputs [start, end) hang after prompt position b
    labels: list[tuple[int, int, int]]  # (position, label token, target index within the window)
    n_prompt: int


def flatten_window(window: Window, answers: Sequence[Sequence[int]]) -> _Flat:
    """The prompt of ``window`` plus one branch per target (``answers[j]`` is target j's answer tokens)."""
    p = window.prompt
    n = len(p.input_ids)
    flat = _Flat(list(p.input_ids), list(p.item_slots), list(range(n)), [], [], n)
    for j, ((b, _), ans) in enumerate(zip(window.targets, answers, strict=True)):
        flat.labels.append((b, ans[0], j))
        start = len(flat.ids)
        for k, tok in enumerate(ans[:-1]):
            flat.labels.append((len(flat.ids), ans[k + 1], j))
            flat.ids.append(tok)
            flat.slots.append(-1)
            flat.pos.append(b + 1 + k)
        flat.branches.append((start, len(flat.ids), b))
    return flat


def tree_mask(flat: _Flat, t_max: int) -> torch.Tensor:
    """(t_max, t_max) bool: causal over the prompt; a branch sees prompt[:b+1] and itself, causally."""
    m = torch.zeros(t_max, t_max, dtype=torch.bool)
    n = flat.n_prompt
    m[:n, :n] = torch.tril(torch.ones(n, n, dtype=torch.bool))
    for start, end, b in flat.branches:
        m[start:end, :b + 1] = True
        m[start:end, start:end] = torch.tril(torch.ones(end - start, end - start, dtype=torch.bool))
    idx = torch.arange(t_max)
    m[idx, idx] = True  # padding rows attend to themselves: no fully masked row (NaN under SDPA)
    return m


def collate_tree(windows: Sequence[Window], answers: Sequence[Sequence[Sequence[int]]], *, pad_id: int) -> TreeBatch:
    """Right-padded TreeBatch; ``answers[w][j]`` = answer tokens of target j of window w."""
    flats = [flatten_window(w, a) for w, a in zip(windows, answers, strict=True)]
    bsz, t_max = len(flats), max(len(f.ids) for f in flats)
    ids = torch.full((bsz, t_max), pad_id, dtype=torch.long)
    slots = torch.full((bsz, t_max), -1, dtype=torch.long)
    pos = torch.zeros((bsz, t_max), dtype=torch.long)
    targets = torch.full((bsz, t_max), -100, dtype=torch.long)
    target_of = torch.full((bsz, t_max), -1, dtype=torch.long)
    masks, offset = [], 0
    for b, f in enumerate(flats):
        t = len(f.ids)
        ids[b, :t], slots[b, :t], pos[b, :t] = torch.tensor(f.ids), torch.tensor(f.slots), torch.tensor(f.pos)
        for p, label, j in f.labels:
            targets[b, p], target_of[b, p] = label, offset + j
        offset += len(windows[b].targets)
        masks.append(tree_mask(f, t_max))
    last = torch.tensor([f.n_prompt - 1 for f in flats])
    return TreeBatch(ids, slots, torch.stack(masks)[:, None], pos, last, targets, target_of)
