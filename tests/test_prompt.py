"""The one prompt builder: known answers for both layouts, truncation, and window targets."""

from __future__ import annotations

import pytest

from model.config import PromptConfig
from model.network.prompt import PromptVocab, build_prompt, collate
from model.network.windows import make_windows, window_spans


def vocab(layout: str, max_history: int = 20) -> PromptVocab:
    cfg = PromptConfig(layout=layout, max_history=max_history)  # type: ignore[arg-type]
    table = tuple((100 + i, 200 + i) for i in range(10))  # item i -> SID ids (100+i, 200+i)
    return PromptVocab(cfg=cfg, instruction_ids=(7, 8), sid_token_ids=table, pad_id=0)


def test_tokens_layout_known_answer() -> None:
    p = build_prompt([3, 5], vocab("tokens"))
    assert p.input_ids == [7, 8, 103, 203, 105, 205]
    assert p.item_slots == [-1] * 6
    assert p.boundaries == [3, 5]


def test_items_layout_known_answer() -> None:
    p = build_prompt([3, 5], vocab("items"))
    assert p.input_ids == [7, 8, 0, 0]
    assert p.item_slots == [-1, -1, 3, 5]
    assert p.boundaries == [2, 3]


@pytest.mark.parametrize("layout", ["tokens", "items"])
def test_history_truncated_to_last_items(layout: str) -> None:
    v = vocab(layout, max_history=2)
    assert build_prompt([1, 2, 3, 4], v) == build_prompt([3, 4], v)


def test_collate_right_pads_and_marks_last() -> None:
    v = vocab("tokens")
    batch = collate([build_prompt([1], v), build_prompt([1, 2], v)], pad_id=0)
    assert batch.input_ids.tolist() == [[7, 8, 101, 201, 0, 0], [7, 8, 101, 201, 102, 202]]
    assert batch.attention_mask.sum(1).tolist() == [4, 6]
    assert batch.last.tolist() == [3, 5]


def test_window_spans_known_answer() -> None:
    assert window_spans(6, max_history=3, stride=2) == [(0, 1, 3), (2, 4, 5)]
    assert window_spans(1, max_history=3, stride=2) == []


@pytest.mark.parametrize("stride", [1, 3, 10])
def test_windows_reproduce_every_prefix_sample(stride: int) -> None:
    """Each target t of a sequence appears once, and its boundary sees a suffix of s[:t] that is the
    paper's truncated history when t <= W (exact for stride 1 at every t)."""
    w = 5
    v = vocab("items", max_history=w)
    seq = list(range(10)) + list(range(3))  # length 13
    targets, full = [], 0
    for win in make_windows(seq, v, stride=stride):
        for pos, item in win.targets:
            hist = [win.prompt.item_slots[p] for p in range(pos + 1) if win.prompt.item_slots[p] >= 0]
            t = len(targets) + 1
            assert item == seq[t]
            assert hist == seq[max(0, t - len(hist)):t]
            if t <= w or stride == 1:
                assert hist == seq[max(0, t - w):t]
                full += 1
            targets.append(item)
    assert targets == seq[1:]
    assert full == (len(seq) - 1 if stride == 1 else w)
