"""The one user-encode-and-search path, shared by the server's batcher and ``simgr recommend-batch``:

    histories (item idx, oldest first) -> encode_users (one forward, inference mode) -> ItemIndex.search

so offline scores are exactly what ``/recommend`` would answer for the same history and filters.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import NamedTuple

import numpy as np
import torch

from index import ItemIndex
from service.encoder import UserEncoder


class Scored(NamedTuple):
    scores: np.ndarray  # (B, k) float32, best first; -inf past the last candidate
    ids: np.ndarray  # (B, k) int64 item idx; -1 = no more candidates
    inference_s: float  # the forward pass
    search_s: float  # the index search


def encode_and_search(model: UserEncoder, index: ItemIndex, histories: Sequence[Sequence[int]], *, k: int,
                      exclude: Sequence[Collection[int]] | None = None,
                      allow: Sequence[Collection[int] | None] | None = None) -> Scored:
    """Top-``k`` items for each history (each non-empty, already cut to the model's max_history)."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        q = np.asarray(model.encode_users(histories), dtype=np.float32)  # (B, D)
    t1 = time.perf_counter()
    if not np.isfinite(q).all():
        raise RuntimeError(f"model {model.model_version} produced non-finite user embeddings")
    scores, ids = index.search(q, k, exclude=exclude, allow=allow)  # (B, k)
    return Scored(scores, ids, t1 - t0, time.perf_counter() - t1)
