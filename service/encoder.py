"""The one thing the service needs from a model: batched user encoding over a fixed catalogue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np


class UserEncoder(Protocol):
    """What the service needs from a model: ``model.export.bundle.Bundle`` and ``service.dummy.DummyEncoder``."""

    model_version: str
    n_items: int
    dim: int
    max_history: int

    @property
    def embeddings(self) -> np.ndarray: ...  # (N, D) float32

    @property
    def item_ids(self) -> Sequence[str]: ...  # row -> item id

    @property
    def item_lookup(self) -> Mapping[str, int]: ...  # item id -> row, live items only

    @property
    def popularity(self) -> Sequence[int] | np.ndarray: ...  # live item rows, most popular first

    def encode_users(self, histories: Sequence[Sequence[int]]) -> np.ndarray: ...  # (B, D) float32
