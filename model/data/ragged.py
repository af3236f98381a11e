"""Per-user sequences held as two flat arrays instead of one Python list per user.

A 10M-interaction log as ``list[list[int]]`` costs ~400 MB of Python objects; as offsets + values it is
~45 MB, and each user's list exists only while it is being written.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np


class RaggedSequences(Sequence[list[int]]):
    """``values[offsets[u]:offsets[u + 1]]`` is user u's item indices, oldest first."""

    def __init__(self, *, offsets: np.ndarray, values: np.ndarray) -> None:
        if offsets.ndim != 1 or offsets[0] != 0 or offsets[-1] != len(values):
            raise ValueError("offsets must start at 0 and end at len(values)")
        self.offsets = offsets.astype(np.int64, copy=False)  # (U + 1,)
        self.values = values  # (sum of lengths,)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, u: int) -> list[int]: ...

    @overload
    def __getitem__(self, u: slice) -> list[list[int]]: ...

    def __getitem__(self, u: int | slice) -> list[int] | list[list[int]]:
        if isinstance(u, slice):
            return [self[i] for i in range(*u.indices(len(self)))]
        if u < 0:
            u += len(self)
        if not 0 <= u < len(self):
            raise IndexError(u)
        return self.values[self.offsets[u]:self.offsets[u + 1]].tolist()  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[list[int]]:
        for u in range(len(self)):
            yield self.values[self.offsets[u]:self.offsets[u + 1]].tolist()

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)  # (U,)
