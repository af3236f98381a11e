"""The learning-rate schedule: linear warmup, then cosine decay to zero over the run or its wall-clock budget."""

from __future__ import annotations

import math


def lr_factor(*, step: int, total: int, warmup: int, budget_fraction: float = 0.0) -> float:
    """Linear warmup, then cosine decay to 0 over the run. With a wall-clock budget the run's progress is
    max(steps done / total steps, time used / budget), so a budgeted run still anneals to its end.

    lr_factor(step=0, total=100, warmup=10) = 0.1; lr_factor(step=100, total=100, warmup=10) = 0.0"""
    if step < warmup:
        return (step + 1) / warmup
    progress = max((step - warmup) / max(1, total - warmup), budget_fraction)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
