"""Which examples a run visits and in what order: each epoch a seeded permutation of the training examples,
sharded over DDP ranks, with micro-batches of similar example sizes (little padding); a fixed sample of
validation users."""

from __future__ import annotations

import numpy as np


def epoch_order(sizes: np.ndarray, *, seed: int, epoch: int, rank: int = 0, world: int = 1, micro: int = 1,
                pool: int = 1) -> list[int]:
    """This rank's shard of a seeded permutation of the examples; every rank gets the same count (DDP).

    Batches are right-padded to their longest example, and training windows run from 1 to 20 items: in
    random micro-batches about three quarters of the positions are padding. With ``pool`` > 1, each run of
    ``pool`` micro-batches of the permutation is sorted by ``sizes`` (N,) and cut into micro-batches again,
    whose order is then shuffled: every example is still seen once per epoch in a random batch order, but
    next to examples of its own size. pool=1 is the plain permutation.

    epoch_order(np.array([1, 9, 2, 8]), seed=0, epoch=0, micro=2, pool=2) -> pairs {1, 2} and {9, 8} sizes
    """
    rng = np.random.default_rng(seed + epoch)
    perm = rng.permutation(len(sizes))
    per_rank = len(sizes) // world
    mine = perm[rank * per_rank:(rank + 1) * per_rank]
    if pool <= 1 or micro < 1:
        return mine.tolist()  # type: ignore[no-any-return]
    span = pool * micro
    pools = [c[np.argsort(sizes[c], kind="stable")] for c in np.split(mine, range(span, len(mine), span))]
    batches = [b for c in pools for b in np.split(c, range(micro, len(c), micro))]
    full = [b for b in batches if len(b) == micro]
    ragged = [b for b in batches if len(b) < micro]  # at most one: kept last, where the epoch drops it
    return np.concatenate([full[i] for i in rng.permutation(len(full))] + ragged).tolist()  # type: ignore[no-any-return]


def valid_sample(histories: list[list[int]], targets: list[int], n: int) -> tuple[list[list[int]], list[int]]:
    """A fixed random sample of ``n`` validation users (seed 0, the same for every run), in user order; all
    when ``n`` is 0 or at least their number."""
    if not n or n >= len(histories):
        return histories, targets
    keep = np.sort(np.random.default_rng(0).choice(len(histories), n, replace=False)).tolist()
    return [histories[i] for i in keep], [targets[i] for i in keep]
