"""A stand-in user encoder with no forward pass (infinity's ``dummytransformer`` idea).

User embedding = mean of the item embeddings of the (last ``max_history``) history items, in
float64 then cast, so it is deterministic and identical batched or alone. An optional sleep per
batch imitates model time for batching, overload and timeout tests. ``wrap`` keeps a real
bundle's catalogue and embeddings but skips its model: the benchmark's HTTP-floor server.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence

import numpy as np

from service.encoder import UserEncoder


class DummyEncoder:
    """Deterministic ``encode_users`` over a catalogue; satisfies :class:`UserEncoder`."""

    def __init__(
        self,
        *,
        item_ids: Sequence[str],
        embeddings: np.ndarray,
        popularity: Sequence[int] | np.ndarray,
        max_history: int = 20,
        model_version: str | None = None,
        sleep_ms: float = 0.0,
    ) -> None:
        self.item_ids = list(item_ids)
        self.item_lookup = {iid: i for i, iid in enumerate(self.item_ids)}
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)  # (N, D)
        self.n_items, self.dim = self.embeddings.shape
        self.popularity = [int(i) for i in popularity]
        self.max_history = max_history
        self.model_version = model_version or "dummy-" + hashlib.sha256(self.embeddings.tobytes()).hexdigest()[:12]
        self.sleep_ms = sleep_ms
        self.calls = 0  # forward calls (batches), for batching tests
        self.batch_sizes: list[int] = []

    @classmethod
    def random(
        cls, *, n_items: int = 200, dim: int = 16, max_history: int = 20, seed: int = 0, sleep_ms: float = 0.0
    ) -> DummyEncoder:
        """Items ``item-0`` .. ``item-{n-1}`` with random unit embeddings; popularity = a random order."""
        rng = np.random.default_rng(seed)
        emb = rng.standard_normal((n_items, dim)).astype(np.float32)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        return cls(
            item_ids=[f"item-{i}" for i in range(n_items)],
            embeddings=emb,
            popularity=rng.permutation(n_items).tolist(),
            max_history=max_history,
            sleep_ms=sleep_ms,
        )

    @classmethod
    def wrap(cls, model: UserEncoder, *, sleep_ms: float = 0.0) -> DummyEncoder:
        """The catalogue, embeddings and version of ``model``, without its forward pass."""
        return cls(
            item_ids=model.item_ids,
            embeddings=model.embeddings,
            popularity=model.popularity,
            max_history=model.max_history,
            model_version=f"{model.model_version}-noop",
            sleep_ms=sleep_ms,
        )

    def encode_users(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """(B, D) float32: mean embedding of each history's last ``max_history`` items."""
        self.calls += 1
        self.batch_sizes.append(len(histories))
        if self.sleep_ms:
            time.sleep(self.sleep_ms / 1000)
        out = np.empty((len(histories), self.dim), dtype=np.float32)
        for b, hist in enumerate(histories):
            if not hist:
                raise ValueError("empty history")
            out[b] = self.embeddings[list(hist)[-self.max_history :]].astype(np.float64).mean(axis=0)
        return out
