"""Catalogue rows: the record types (a row, a change, its outcome), and the immutable columnar store a catalogue is loaded into.

``BaseRows`` holds the rows of an exported bundle as columns (index/columns.py), about 60 bytes per item
plus its metadata's JSON, so 10^6 items cost tens of MB instead of a GB of Python objects. A row object
(``CatalogRow``) is made only when one is asked for (``row(i)``).
"""

from __future__ import annotations

import dataclasses
import json
from array import array
from collections.abc import Iterable
from functools import cached_property
from typing import Any, Literal

import numpy as np

from index.columns import HashIndex, StringColumn, StringColumnBuilder

Scalar = str | int | float | bool
Origin = Literal["trained", "added"]


@dataclasses.dataclass(frozen=True)
class CatalogRow:
    item_id: str
    sid: tuple[int, ...]  # full semantic ID (uniqueness code last)
    origin: Origin  # "trained": in the training catalogue; "added": coded while serving
    title: str | None = None
    text: str | None = None
    categories: tuple[str, ...] = ()
    attributes: tuple[tuple[str, Scalar], ...] = ()  # sorted by name
    live: bool = True

    def meta(self) -> tuple[Any, ...]:
        return (self.title, self.text, self.categories, self.attributes)


@dataclasses.dataclass(frozen=True)
class Upsert:
    item_id: str
    title: str | None = None
    text: str | None = None
    categories: tuple[str, ...] = ()
    attributes: tuple[tuple[str, Scalar], ...] = ()
    codes: tuple[int, ...] | None = None  # RQ-VAE codes (L-1) or a full given ID (L); None: keep the ID
    full: bool = False  # ``codes`` already holds the uniqueness level


@dataclasses.dataclass(frozen=True)
class Retire:
    item_id: str


Change = Upsert | Retire
Status = Literal["created", "updated", "unchanged", "retired", "absent", "uncoded"]


@dataclasses.dataclass(frozen=True)
class Outcome:
    item_id: str
    status: Status
    sid: tuple[int, ...] | None  # the item's semantic ID after the change (None when absent)



def _encode_meta(row: CatalogRow) -> str:
    if row.title is None and row.text is None and not row.categories and not row.attributes:
        return ""
    return json.dumps([row.title, row.text, list(row.categories), [list(a) for a in row.attributes]],
                      ensure_ascii=False, separators=(",", ":"))


def _decode_meta(raw: str) -> dict[str, Any]:
    if not raw:
        return {}
    title, text, cats, attrs = json.loads(raw)
    return {"title": title, "text": text, "categories": tuple(cats), "attributes": tuple((k, v) for k, v in attrs)}


@dataclasses.dataclass(frozen=True, eq=False)
class BaseRows:
    """Rows 0..B-1 of a catalogue as columns; never changed, shared by every catalogue derived from it."""

    ids: StringColumn  # (B,) item ids
    codes: np.ndarray  # (B, L) int32 semantic IDs
    added: np.ndarray  # (B,) bool, origin == "added"
    live: np.ndarray  # (B,) bool, live when loaded
    meta: StringColumn  # (B,) JSON [title, text, categories, attributes], "" when all are empty
    id_index: HashIndex  # hash(item_id) -> row
    categories: dict[str, np.ndarray]  # category -> rows (ascending)

    @cached_property
    def prefix_index(self) -> HashIndex:
        """hash(sid[:-1]) -> row; built on the first new ID (only catalogue writes need it)."""
        prefixes = self.codes[:, :-1].tolist()
        hashes = np.fromiter((hash(tuple(p)) for p in prefixes), dtype=np.int64, count=len(prefixes))
        del prefixes
        return HashIndex(hashes, np.arange(len(hashes), dtype=np.int64))

    @classmethod
    def build(cls, rows: Iterable[CatalogRow]) -> BaseRows:
        """Streams ``rows`` into columns (a row object lives only while it is copied in)."""
        ids, meta = StringColumnBuilder(), StringColumnBuilder()
        codes, flags, id_h = array("q"), array("b"), array("q")
        cats: dict[str, array[int]] = {}
        width = None
        for i, r in enumerate(rows):
            if width is None:
                width = len(r.sid)
            elif len(r.sid) != width:
                raise ValueError(f"row {i} ({r.item_id!r}): a semantic ID of {len(r.sid)} codes, expected {width}")
            ids.add(r.item_id)
            meta.add(_encode_meta(r))
            codes.extend(r.sid)
            flags.append((r.origin == "added") | (r.live << 1))
            id_h.append(hash(r.item_id))
            for c in r.categories:
                cats.setdefault(c, array("q")).append(i)
        n = len(flags)
        f = np.frombuffer(flags, dtype=np.int8) if n else np.zeros(0, dtype=np.int8)
        rows_ = np.arange(n, dtype=np.int64)
        out = cls(ids=ids.finish(), codes=np.frombuffer(codes, dtype=np.int64).reshape(n, width or 0).astype(np.int32),
                  added=(f & 1).astype(bool), live=(f & 2).astype(bool), meta=meta.finish(),
                  id_index=HashIndex(np.frombuffer(id_h, dtype=np.int64), rows_),
                  categories={c: np.frombuffer(v, dtype=np.int64).copy() for c, v in cats.items()})
        out._check_repeats()
        return out

    def _check_repeats(self) -> None:
        """An id may repeat only on dead rows before its latest row (a re-coded item's history)."""
        h = self.id_index.hashes
        for pos in np.flatnonzero(h[1:] == h[:-1]).tolist():
            a, b = sorted((int(self.id_index.values[pos]), int(self.id_index.values[pos + 1])))
            if self.ids[a] == self.ids[b] and self.live[a]:
                raise ValueError(f"item {self.ids[a]!r}: live at row {a} but repeated at row {b}")

    def __len__(self) -> int:
        return len(self.added)

    def row(self, i: int) -> CatalogRow:
        return CatalogRow(self.ids[i], tuple(int(c) for c in self.codes[i]), "added" if self.added[i] else "trained",
                          live=bool(self.live[i]), **_decode_meta(self.meta[i]))

    def last_row(self, item_id: str) -> int | None:
        """The latest row holding ``item_id`` (live or dead), or None."""
        hits = [int(r) for r in self.id_index.candidates(hash(item_id)) if self.ids[int(r)] == item_id]
        return hits[-1] if hits else None

    def used_codes(self, prefix: tuple[int, ...]) -> set[int]:
        """Uniqueness codes taken under ``prefix`` (by any row, live or dead)."""
        want = np.asarray(prefix, dtype=self.codes.dtype)
        return {int(self.codes[r, -1]) for r in self.prefix_index.candidates(hash(prefix))
                if np.array_equal(self.codes[r, :-1], want)}

    @property
    def nbytes(self) -> int:
        return int(self.ids.nbytes + self.meta.nbytes + self.codes.nbytes + self.added.nbytes + self.live.nbytes
                   + self.id_index.nbytes + sum(a.nbytes for a in self.categories.values()))
