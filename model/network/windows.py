"""Training windows: one causal pass over a user's sequence yields the loss at every item boundary.

For a training sequence s (the user's items[:-2]) the paper's samples are (s[max(0,t-W):t], s[t]) for
t = 1..len(s)-1. A window starting at a covers the targets t in (a + W - stride, a + W] (the first window
covers 1..W), so targets with t <= W see exactly the paper's history and later ones see between
W - stride + 1 and W items. stride = 1 reproduces the paper's sample set exactly.

Example (W=3, stride=2), s = [10, 11, 12, 13, 14, 15]:
    window [10, 11, 12] -> targets 11, 12, 13 ; window [12, 13, 14] -> targets 14, 15
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from model.network.prompt import Prompt, PromptVocab, build_prompt


class Window(NamedTuple):
    prompt: Prompt
    targets: list[tuple[int, int]]  # (position, target item)


def window_spans(n: int, *, max_history: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, first_target, last_target) index triples over a sequence of length n.

    window_spans(6, max_history=3, stride=2) -> [(0, 1, 3), (2, 4, 5)]"""
    if n < 2:
        return []
    stride = max(1, min(stride, max_history))
    spans = [(0, 1, min(max_history, n - 1))]
    while spans[-1][2] < n - 1:
        start = spans[-1][0] + stride
        spans.append((start, spans[-1][2] + 1, min(start + max_history, n - 1)))
    return spans


def make_windows(sequence: Sequence[int], vocab: PromptVocab, *, stride: int) -> list[Window]:
    w = vocab.cfg.max_history
    out = []
    for start, first, last in window_spans(len(sequence), max_history=w, stride=stride):
        prompt = build_prompt(sequence[start:last], vocab)  # history items s[start:last], <= W of them
        # boundary j (after item s[start + j]) predicts s[start + j + 1]
        pairs = [(prompt.boundaries[t - 1 - start], int(sequence[t])) for t in range(first, last + 1)]
        out.append(Window(prompt, pairs))
    return out
