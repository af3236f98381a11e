"""The one thing the service needs from a model: batched user encoding over a fixed catalogue."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class UserEncoder(Protocol):
    """What the service needs from a model: ``model.export.bundle.Bundle`` and ``service.dummy.DummyEncoder``."""

    model_version: str
    n_items: int
    dim: int
    max_history: int
    item_ids: list[str]
    item_lookup: dict[str, int]
    embeddings: np.ndarray  # (N, D) float32
    popularity: list[int]  # item idx, most popular first

    def encode_users(self, histories: Sequence[Sequence[int]]) -> np.ndarray: ...  # (B, D) float32
