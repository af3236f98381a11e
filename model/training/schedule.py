"""The learning-rate schedule: linear warmup, then cosine decay to zero over the run or its wall-clock budget."""

from __future__ import annotations

import math


def lr_factor(*, step: int, total: int, warmup: int, budget_fraction: float = 0.0) -> float:
    """Linear warmup, then cosine decay to 0 over the run's steps.

    ``budget_fraction`` is the share of a wall-clock budget used so far. Where the budget will end the run
    before its last step at the pace so far (``budget_fraction * total > step``), progress is the larger of
    the steps' share and the time's, so the run still anneals to its end. Where it will not, the clock is
    ignored: two runs of one seed then take the same learning rates, and train the same weights, however
    fast their machines ran (before, the time's share led the steps' for the first epochs after warmup,
    when setup and the first validation weigh most, and the same seed scored differently run to run).

    lr_factor(step=0, total=100, warmup=10) = 0.1; lr_factor(step=100, total=100, warmup=10) = 0.0"""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if budget_fraction * total > step:  # at this pace the budget ends the run first
        progress = max(progress, budget_fraction)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
