"""An exponential moving average of the trainable weights, validated and kept as the model.

Averaged weights (Polyak & Juditsky, "Acceleration of stochastic approximation by averaging", 1992; as an
EMA in Tarvainen & Valpola, "Mean teachers are better role models", 2017) smooth out the last steps'
noise. With SimGR, validation NDCG@10 peaks early in a budgeted run and then swings from epoch to epoch;
the average follows the trend instead of the last mini-batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class WeightAverage:
    """shadow <- decay * shadow + (1 - decay) * weight after every optimiser step.

    ``swapped()`` puts the average into the model for validation and saving, then restores the trained
    weights. ``decay`` 0.999 averages over about the last 1,000 steps."""

    def __init__(self, params: list[torch.nn.Parameter], *, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.weights = [p.detach() for p in params]  # views of the parameters' storage, made once
        self.decay = decay
        self.shadow = [w.clone() for w in self.weights]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, self.weights, 1.0 - self.decay)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The averaged weights in place of the trained ones inside the block."""
        trained = [w.clone() for w in self.weights]
        torch._foreach_copy_(self.weights, self.shadow)
        try:
            yield
        finally:
            torch._foreach_copy_(self.weights, trained)

    def state_dict(self) -> dict[str, object]:
        return {"decay": self.decay, "shadow": [s.clone() for s in self.shadow]}

    def load_state_dict(self, state: dict[str, object]) -> None:
        shadow = state["shadow"]
        if not (isinstance(shadow, list) and len(shadow) == len(self.shadow)):
            raise ValueError("the saved average does not match the model's trainable weights")
        torch._foreach_copy_(self.shadow, shadow)
