"""Compact columns for million-item catalogues: no Python object per item.

A catalogue of 10^6 items held as Python objects (a row object, an id string, dict entries, tuples of
codes) costs about 1 KB per item, twice the item matrix itself at D=128. Here an item costs a few tens
of bytes: strings live in one UTF-8 buffer with offsets, exact lookups go through sorted 64-bit hashes
(verified against the stored key, so a hash collision costs a comparison, never a wrong answer), and
codes are one integer matrix.

Example:
    ids = StringColumn.build(["a", "bc", ""])  # data b"abc", offsets [0, 1, 3, 3]
    ids[1] == "bc"
    index = HashIndex(np.array([hash("a"), hash("bc")]), np.array([0, 1]))
    index.candidates(hash("bc")) -> array([1])
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator

import numpy as np


class StringColumn:
    """(M,) strings as one UTF-8 buffer and (M + 1,) int64 offsets."""

    __slots__ = ("data", "offsets")

    def __init__(self, data: bytes, offsets: np.ndarray) -> None:
        self.data, self.offsets = data, offsets

    @classmethod
    def build(cls, values: Iterable[str]) -> StringColumn:
        b = StringColumnBuilder()
        for v in values:
            b.add(v)
        return b.finish()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.data[self.offsets[i] : self.offsets[i + 1]].decode()

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    @property
    def nbytes(self) -> int:
        return len(self.data) + self.offsets.nbytes


class StringColumnBuilder:
    """Appends strings one at a time (streamed loading: nothing per item is kept but its bytes)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._offsets = array("q", [0])

    def add(self, value: str) -> None:
        self._buf += value.encode()
        self._offsets.append(len(self._buf))

    def finish(self) -> StringColumn:
        return StringColumn(bytes(self._buf), np.frombuffer(self._offsets, dtype=np.int64).copy())


class HashIndex:
    """Key hash -> values, sorted once; 16 bytes per entry. The caller checks each candidate's real key.

    ``hashes`` are any int64 hashes of the keys (Python's ``hash`` is fine: the index lives in one process)."""

    __slots__ = ("hashes", "values")

    def __init__(self, hashes: np.ndarray, values: np.ndarray) -> None:
        order = np.argsort(hashes, kind="stable")
        self.hashes = np.ascontiguousarray(hashes, dtype=np.int64)[order]  # (M,) sorted
        self.values = np.ascontiguousarray(values, dtype=np.int64)[order]  # (M,) value of each hash

    def candidates(self, key_hash: int) -> np.ndarray:
        """Values whose key has this hash, in insertion order (usually one, or none)."""
        lo = int(np.searchsorted(self.hashes, key_hash, side="left"))
        if lo == len(self.hashes) or self.hashes[lo] != key_hash:
            return self.values[:0]
        hi = int(np.searchsorted(self.hashes, key_hash, side="right"))
        return self.values[lo:hi]

    @property
    def nbytes(self) -> int:
        return int(self.hashes.nbytes + self.values.nbytes)
