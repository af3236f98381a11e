"""How an item added while serving gets its vector: the settings, and the trained neighbours it can borrow.

An added item's semantic ID places it in the item quantizer's space: its RQ-VAE codes pick one codebook
vector per level, and their sum is the quantised latent of its text (TIGER, arXiv 2305.05065). Its own
code rows are a combination no interaction trained, so its code-mean vector is scored too low against the
trained items (README, Cold items). With ``neighbours=k`` it takes instead the trained vectors of the k
trained items whose quantised latents are nearest to its own, weighted by a softmax over their cosines:
the collaborative signal of the items whose text it shares, read through the same codes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import numpy as np

from model.errors import SimGRError

AddedLevels = Literal["all", "trained", "semantic"]  # which code rows an added item's embedding averages
ADDED_LEVELS: tuple[str, ...] = ("all", "trained", "semantic")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AddedEmbedding:
    """Serve settings SIMGR_ADDED_ITEM_* and `simgr catalog --added-item-*`, in one value."""

    levels: AddedLevels = "trained"  # code rows averaged (code-mean vectors, and items without a quantizer)
    gain: float = 1.0  # scale of the added vector: above 1 lifts added items against trained ones
    neighbours: int = 0  # k > 0: the softmax-weighted mean of the k nearest trained items (needs a quantizer)
    temperature: float = 0.01  # of that softmax over latent cosines; small: the nearest cells dominate

    def __post_init__(self) -> None:
        if not self.gain > 0:
            raise SimGRError(f"added item gain must be positive, got {self.gain}")
        if self.neighbours < 0:
            raise SimGRError(f"added item neighbours must be 0 (off) or positive, got {self.neighbours}")
        if not self.temperature > 0:
            raise SimGRError(f"added item neighbour temperature must be positive, got {self.temperature}")
        if self.levels not in ADDED_LEVELS:
            raise SimGRError(f"added item levels must be one of {', '.join(ADDED_LEVELS)}, got {self.levels!r}")


class TrainedNeighbours:
    """The trained items' quantised latents and vectors; finds an added item's nearest trained items.

    Only rows trained into the bundle take part (never rows added while serving), so an item's vector does
    not depend on the order changes arrive in: a journal replay rebuilds the same vectors.
    """

    _CHUNK = 16  # queries per (chunk, T) score block: 64 MB at a million trained items

    def __init__(self, *, encode: Callable[[np.ndarray], np.ndarray], codes: np.ndarray, rows: np.ndarray,
                 vectors: np.ndarray) -> None:
        self.encode = encode  # (n, L-1) RQ-VAE codes -> (n, C) unit quantised latents (ItemQuantizer.latents)
        self.latents = encode(codes)  # (T, C) the trained items' latents, float32
        self.rows = rows  # (T,) the trained items' rows in ``vectors``
        self.vectors = vectors  # (M, D) the bundle's item vectors, as loaded (a memory map is not copied)

    def mix(self, codes: np.ndarray, *, k: int, temperature: float) -> np.ndarray:
        """(n, L-1) RQ-VAE codes -> (n, D): the softmax(cos / temperature)-weighted mean of trained vectors."""
        latents = self.encode(codes)  # (n, C)
        k = min(k, len(self.latents))
        out = np.empty((len(latents), self.vectors.shape[1]), dtype=np.float32)
        for s in range(0, len(latents), self._CHUNK):
            sims = latents[s:s + self._CHUNK] @ self.latents.T  # (c, T)
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (c, k), any order
            near = np.take_along_axis(sims, top, axis=1)  # (c, k)
            w = np.exp((near - near.max(axis=1, keepdims=True)) / temperature)  # (c, k)
            near_vectors = np.asarray(self.vectors[self.rows[top.ravel()]], dtype=np.float32)  # (c*k, D)
            mixed = np.einsum("ck,ckd->cd", w / w.sum(axis=1, keepdims=True),
                              near_vectors.reshape(*top.shape, -1))  # (c, D)
            out[s:s + len(top)] = mixed
        return out
