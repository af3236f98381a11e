"""The living catalogue: item rows, their semantic IDs, metadata and vectors, changed one batch at a time.

A ``Catalog`` is immutable. ``apply`` builds the next one and returns the index delta (ids to add with
their vectors, ids to remove); the caller swaps one reference, so readers see all of a batch or none.

Row indices are append-only and never reused: a new item, or an added item re-coded because its text
changed, gets a new row; the old row stays (dead) so histories and queued requests that hold an index
still resolve. A dead row's semantic ID stays taken. Only live rows are in ``lookup``, ``popularity``
and the search index.

Storage: the loaded rows are columns (``BaseRows``, shared by every later catalogue); rows changed or
appended while serving sit in small overlays (``changed``, ``tail``) until ``simgr catalog compact``
folds them into a new bundle. A batch therefore costs O(batch) Python work plus a copy of the (M,) live
flags, whatever the catalogue's size.

The uniqueness rule and the item embedding are passed in (``unique``, ``embed``), so the catalogue
stays free of model code and the same ``apply`` runs offline (``simgr catalog apply``) and online.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import Any, TypeVar

import numpy as np

from index.catalog_work import Work
from index.rows import BaseRows, CatalogRow, Change, Origin, Outcome, Retire, Scalar, Status, Upsert

T = TypeVar("T")

__all__ = ["Catalog", "CatalogRow", "Change", "Delta", "Origin", "Outcome", "Retire", "Scalar", "Status",
           "Upsert"]


@dataclasses.dataclass(frozen=True)
class Delta:
    add_ids: np.ndarray  # (A,) int64 row indices to index
    add_vectors: np.ndarray  # (A, D) float32
    remove_ids: np.ndarray  # (R,) int64 row indices to drop from the index


class Catalog:
    """``Catalog(rows, embeddings, base_popularity)``: rows (streamed into columns, or columns already
    built), their (M, D) vectors, and the trained rows' popularity order."""

    def __init__(self, rows: Iterable[CatalogRow] | BaseRows, embeddings: np.ndarray,
                 base_popularity: Sequence[int]) -> None:
        base = rows if isinstance(rows, BaseRows) else BaseRows.build(rows)
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)  # no copy for a float32 memmap
        if len(vectors) != len(base):
            raise ValueError(f"{len(base)} rows but {len(vectors)} vectors")
        self._set(base, tail=(), changed={}, live=base.live.copy(), latest={}, taken={},
                  vectors=(vectors, vectors[:0]), base_popularity=np.asarray(base_popularity, dtype=np.int64))

    def _set(self, base: BaseRows, *, tail: tuple[CatalogRow, ...], changed: dict[int, CatalogRow],
             live: np.ndarray, latest: dict[str, int], taken: dict[tuple[int, ...], set[int]],
             vectors: tuple[np.ndarray, np.ndarray], base_popularity: np.ndarray) -> None:
        self.base, self.tail, self.changed = base, tail, changed  # rows: base, then tail; changed overrides base
        self.live = live  # (M,) bool
        self.latest = latest  # item id -> its latest row, for ids with a row in ``tail``
        self.taken = taken  # prefix -> every taken uniqueness code, for prefixes with a row in ``tail``
        self.base_vectors, self.tail_vectors = vectors  # (B, D) as loaded (often a memmap), (T, D) added since
        self.base_popularity = base_popularity  # trained rows, most popular first

    # reading

    def __len__(self) -> int:
        return len(self.live)

    @property
    def dim(self) -> int:
        return int(self.base_vectors.shape[1])

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """(n, D) float32 vectors of ``rows`` (n,), read from the loaded matrix and the added segment."""
        rows = np.asarray(rows, dtype=np.int64)
        b = len(self.base_vectors)
        if not len(self.tail_vectors) or (len(rows) and rows.max() < b):
            return np.asarray(self.base_vectors[rows])
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        old = rows < b
        out[old] = self.base_vectors[rows[old]]
        out[~old] = self.tail_vectors[rows[~old] - b]
        return out

    @cached_property
    def embeddings(self) -> np.ndarray:
        """(M, D) every row's vector as one matrix: the loaded one itself until items are added, then a
        copy (offline tools; serving reads ``vectors`` and the index's own segments instead)."""
        if not len(self.tail_vectors):
            return self.base_vectors
        return np.concatenate([self.base_vectors, self.tail_vectors])

    def row(self, i: int) -> CatalogRow:
        i = int(i)
        b = len(self.base)
        r = self.tail[i - b] if i >= b else self.changed.get(i) or self.base.row(i)
        live = bool(self.live[i])
        return r if r.live == live else dataclasses.replace(r, live=live)

    def item_id(self, i: int) -> str:
        b = len(self.base)
        return self.tail[i - b].item_id if i >= b else self.base.ids[i]

    @property
    def rows(self) -> RowView[CatalogRow]:
        return RowView(self, self.row)

    @property
    def ids(self) -> RowView[str]:
        """Row -> item id (dead rows keep theirs)."""
        return RowView(self, self.item_id)

    @property
    def lookup(self) -> Lookup:
        """item id -> row, live items only (a Mapping view over the columns)."""
        return Lookup(self)

    def last_row(self, item_id: str) -> int | None:
        """The latest row that held ``item_id``, live or dead."""
        r = self.latest.get(item_id)
        return r if r is not None else self.base.last_row(item_id)

    def row_of(self, item_id: str) -> int | None:
        """The live row of ``item_id``, or None."""
        r = self.last_row(item_id)
        return r if r is not None and self.live[r] else None

    def used_codes(self, prefix: tuple[int, ...]) -> set[int]:
        extra = self.taken.get(prefix)
        return set(extra) if extra is not None else self.base.used_codes(prefix)

    @cached_property
    def n_live(self) -> int:
        return int(self.live.sum())

    def live_rows(self) -> np.ndarray:
        return np.flatnonzero(self.live)  # (n_live,) int64, ascending

    @cached_property
    def codes(self) -> np.ndarray:
        """(M, L) int32 semantic ID of every row."""
        return self.codes_from(0)

    def codes_from(self, start: int) -> np.ndarray:
        """(M - start, L) int32 semantic IDs of rows ``start``.. (a row's ID never changes once written)."""
        b = len(self.base)
        if not self.tail:
            return self.base.codes[start:]
        tail = np.asarray([r.sid for r in self.tail[max(0, start - b):]], dtype=np.int32).reshape(-1, self.base.codes.shape[1])
        return np.concatenate([self.base.codes[start:], tail]) if start < b else tail

    @cached_property
    def popularity(self) -> np.ndarray:
        """Live rows: trained ones by training popularity, then the rest in row order (added items)."""
        pop = self.base_popularity[self.live[self.base_popularity]] if len(self.base_popularity) else self.base_popularity
        rest = self.live.copy()
        rest[pop] = False
        return np.concatenate([pop, np.flatnonzero(rest)]).astype(np.int64)

    def counts(self) -> dict[str, int]:
        """Live items per origin."""
        b = len(self.base)
        added = int((self.base.added & self.live[:b]).sum())
        added += sum(1 for j, r in enumerate(self.tail) if self.live[b + j] and r.origin == "added")
        return {"trained": self.n_live - added, "added": added}  # a changed row keeps its origin

    def matching(self, categories_any: Sequence[str] | None, attributes: Mapping[str, Any] | None) -> set[int]:
        """Live rows in any of ``categories_any`` whose attributes match every condition: a value, a list of
        values (any), or ``{"min": a, "max": b}`` (inclusive, numbers only)."""
        ids = self._in_categories(set(categories_any)) if categories_any else set(self.live_rows().tolist())
        for name, cond in (attributes or {}).items():
            ids = {i for i in ids if _matches(dict(self.row(i).attributes).get(name), cond)}
        return ids

    def _in_categories(self, want: set[str]) -> set[int]:
        base = [self.base.categories[c] for c in want if c in self.base.categories]
        rows = set(np.unique(np.concatenate(base)).tolist()) if base else set()
        rows -= self.changed.keys()  # their categories may have changed: decided below
        b = len(self.base)
        overlay = [*self.changed.items(), *((b + j, r) for j, r in enumerate(self.tail))]
        rows |= {i for i, r in overlay if want.intersection(r.categories)}
        return {i for i in rows if self.live[i]}

    # changing

    def apply(self, changes: Iterable[Change], *, unique: Callable[[tuple[int, ...], set[int]], int | None],
              embed: Callable[[list[tuple[int, ...]]], np.ndarray]) -> tuple[Catalog, Delta, list[Outcome]]:
        """The next catalogue after ``changes`` (in order), the index delta and one outcome per change.

        ``unique(prefix, taken)`` picks the uniqueness code of a new ID; ``embed(sids)`` -> (n, D) vectors.
        """
        w = Work(self, unique)
        outcomes = [w.retire(ch.item_id) if isinstance(ch, Retire) else w.upsert(ch) for ch in changes]
        vectors = embed([w.row(i).sid for i in w.new_rows]) if w.new_rows else np.zeros((0, self.dim))
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(w.new_rows), self.dim)
        tail_vectors = np.concatenate([self.tail_vectors, vectors]) if w.new_rows else self.tail_vectors
        live = np.concatenate([self.live, np.zeros(len(w.new_rows), dtype=bool)])
        for i, flag in w.live.items():
            live[i] = flag
        gone = set(w.removed)
        add = np.asarray([i for i in [*w.revived, *w.new_rows] if live[i] and i not in gone], dtype=np.int64)
        old_live = sorted(i for i in gone if i < len(self) and self.live[i])
        nxt = object.__new__(Catalog)
        nxt._set(self.base, tail=tuple(w.tail), changed=w.changed, live=live, latest=w.latest,
                 taken=w.taken, vectors=(self.base_vectors, tail_vectors), base_popularity=self.base_popularity)
        delta = Delta(add, nxt.vectors(add) if len(add) else vectors[:0], np.asarray(old_live, dtype=np.int64))
        return nxt, delta, outcomes


class RowView(Sequence[T]):
    """Per-row values made on demand (``catalog.rows[i]``, ``catalog.ids[i]``), no list of M objects."""

    def __init__(self, catalog: Catalog, get: Callable[[int], T]) -> None:
        self._n, self._get = len(catalog), get

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self._get(j) for j in range(*i.indices(self._n))]
        return self._get(i)


class Lookup(Mapping[str, int]):
    """Item id -> live row."""

    def __init__(self, catalog: Catalog) -> None:
        self._c = catalog

    def __getitem__(self, item_id: str) -> int:
        r = self._c.row_of(item_id) if isinstance(item_id, str) else None
        if r is None:
            raise KeyError(item_id)
        return r

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and self._c.row_of(item_id) is not None

    def __len__(self) -> int:
        return self._c.n_live

    def __iter__(self) -> Iterator[str]:
        ids = self._c.ids
        return (ids[i] for i in self._c.live_rows().tolist())


def _matches(value: Any, cond: Any) -> bool:
    if isinstance(cond, list):
        return any(_equal(value, c) for c in cond)
    if isinstance(cond, dict):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        lo, hi = cond.get("min"), cond.get("max")
        return (lo is None or value >= lo) and (hi is None or value <= hi)
    return _equal(value, cond)


def _equal(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 (JSON booleans are not numbers)."""
    return a is not None and isinstance(a, bool) == isinstance(b, bool) and a == b
