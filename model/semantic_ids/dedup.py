"""Making semantic IDs unique: collision statistics and the three rules that separate items sharing a tuple.

- ``dedup_append_level``: a counter level, 0, 1, 2, ... within each group (TIGER; uniqueness "lowest").
- ``dedup_spread_level``: a level whose codes start at a per-tuple offset (uniqueness "spread",
  model/semantic_ids/space.py).
- ``dedup_reassign_last``: given IDs keep their length; collided items move to a free last-level code.

Pure functions over (N, L) int arrays; each docstring has a worked example.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import NamedTuple

import numpy as np

from model.errors import SimGRError
from model.semantic_ids.space import free_code, lowest_free


class CollisionStats(NamedTuple):
    collision_rate: float  # fraction of items whose code tuple is shared with another item
    max_group: int  # size of the largest group of items sharing one tuple (1 = all unique)
    n_colliding_tuples: int  # distinct tuples used by more than one item


def collision_stats(codes: np.ndarray) -> CollisionStats:
    """Collision summary of an (N, L) code matrix.

    Example: [[1, 2], [1, 2], [3, 4]] -> CollisionStats(collision_rate=0.667, max_group=2, n_colliding_tuples=1)
    """
    if len(codes) == 0:
        return CollisionStats(0.0, 0, 0)
    counts = Counter(map(tuple, np.asarray(codes).tolist()))
    shared = sum(c for c in counts.values() if c > 1)
    return CollisionStats(shared / len(codes), max(counts.values()), sum(1 for c in counts.values() if c > 1))


def dedup_append_level(codes: np.ndarray) -> np.ndarray:
    """Append a counter level: 0 for the first item of each tuple, 1 for the second, ... (TIGER).

    Example: [[1, 2], [1, 2], [3, 4], [1, 2]] -> [[1, 2, 0], [1, 2, 1], [3, 4, 0], [1, 2, 2]]
    """
    codes = np.asarray(codes, dtype=np.int64)
    seen: Counter[tuple[int, ...]] = Counter()
    extra = np.zeros((len(codes), 1), dtype=np.int64)
    for i, row in enumerate(map(tuple, codes.tolist())):
        extra[i, 0] = seen[row]
        seen[row] += 1
    return np.concatenate([codes.reshape(len(codes), -1), extra], axis=1)


def dedup_spread_level(codes: np.ndarray, size: int) -> np.ndarray:
    """Append a uniqueness level by the ``spread`` rule (``free_code``): items sharing a tuple take the free
    codes from the tuple's own offset on, so codes cover the level evenly instead of piling up on 0.

    Example (size 8; spread_start((1, 2), 8) == 6): [[1, 2], [1, 2], [1, 2]] -> [[1, 2, 6], [1, 2, 7], [1, 2, 0]]
    """
    codes = np.asarray(codes, dtype=np.int64).reshape(len(codes), -1)
    used: defaultdict[tuple[int, ...], set[int]] = defaultdict(set)
    extra = np.zeros((len(codes), 1), dtype=np.int64)
    for i, row in enumerate(map(tuple, codes.tolist())):
        code = free_code(row, used[row], size, "spread")
        if code is None:
            raise SimGRError(f"more than {size} items share the codes {row}: raise --unique-codes")
        extra[i, 0] = code
        used[row].add(code)
    return np.concatenate([codes, extra], axis=1)


def dedup_reassign_last(codes: np.ndarray, codebook_size: int) -> np.ndarray:
    """Make tuples unique keeping length L: the 2nd..nth items of a colliding group get the lowest
    last-level code in [0, codebook_size) not yet used under the same (L-1)-prefix. Groups are handled in
    order of first appearance, items in row order. If a prefix runs out of codes, the leftover duplicates
    are separated by ``dedup_append_level`` (length L+1).

    Example (codebook_size=4): [[1, 2, 3], [1, 2, 3], [1, 2, 0], [4, 5, 6]]
        -> [[1, 2, 3], [1, 2, 1], [1, 2, 0], [4, 5, 6]]   (prefix (1, 2) already uses 3 and 0)
    """
    out = np.array(codes, dtype=np.int64, copy=True)
    rows = list(map(tuple, out.tolist()))
    taken: defaultdict[tuple[int, ...], set[int]] = defaultdict(set)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, row in enumerate(rows):
        taken[row[:-1]].add(row[-1])
        groups.setdefault(row, []).append(i)
    full = False
    for row, members in groups.items():
        used = taken[row[:-1]]
        for i in members[1:]:
            free = lowest_free(used, codebook_size)
            if free is None:
                full = True
                break
            out[i, -1] = free
            used.add(free)
    return dedup_append_level(out) if full else out
