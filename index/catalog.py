"""The living catalogue: item rows, their semantic IDs, metadata and vectors, changed one batch at a time.

A ``Catalog`` is immutable. ``apply`` builds the next one and returns the index delta (ids to add with
their vectors, ids to remove); the caller swaps one reference, so readers see all of a batch or none.

Row indices are append-only and never reused: a new item, or an added item re-coded because its text
changed, gets a new row; the old row stays (dead) so histories and queued requests that hold an index
still resolve. A dead row's semantic ID stays taken. Only live rows are in ``lookup``, ``popularity``
and the search index.

The uniqueness rule and the item embedding are passed in (``unique``, ``embed``), so the catalogue
stays free of model code and the same ``apply`` runs offline (``simgr catalog apply``) and online.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any, Literal

import numpy as np

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


@dataclasses.dataclass(frozen=True)
class Delta:
    add_ids: np.ndarray  # (A,) int64 row indices to index
    add_vectors: np.ndarray  # (A, D) float32
    remove_ids: np.ndarray  # (R,) int64 row indices to drop from the index


class Catalog:
    def __init__(self, rows: Sequence[CatalogRow], embeddings: np.ndarray, base_popularity: Sequence[int]) -> None:
        self.rows = list(rows)
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)  # (M, D), row i = rows[i]
        self.base_popularity = list(base_popularity)  # trained rows, most popular first
        self.lookup = {r.item_id: i for i, r in enumerate(self.rows) if r.live}
        self.last_row = {r.item_id: i for i, r in enumerate(self.rows)}  # latest row per id, live or dead
        self.taken: defaultdict[tuple[int, ...], set[int]] = defaultdict(set)  # prefix -> used last codes
        for r in self.rows:
            self.taken[r.sid[:-1]].add(r.sid[-1])

    @property
    def n_live(self) -> int:
        return len(self.lookup)

    @cached_property
    def popularity(self) -> list[int]:
        """Live rows: trained ones by training popularity, then the rest in row order (added items)."""
        live = set(self.lookup.values())
        order = [i for i in self.base_popularity if i in live]
        seen = set(order)
        return order + [i for i in sorted(live) if i not in seen]

    @cached_property
    def by_category(self) -> dict[str, set[int]]:
        out: defaultdict[str, set[int]] = defaultdict(set)
        for i in self.lookup.values():
            for c in self.rows[i].categories:
                out[c].add(i)
        return dict(out)

    def counts(self) -> dict[str, int]:
        """Live items per origin."""
        out = {"trained": 0, "added": 0}
        for i in self.lookup.values():
            out[self.rows[i].origin] += 1
        return out

    def matching(self, categories_any: Sequence[str] | None, attributes: Mapping[str, Any] | None) -> set[int]:
        """Live rows in any of ``categories_any`` whose attributes match every condition: a value, a list of
        values (any), or ``{"min": a, "max": b}`` (inclusive, numbers only)."""
        ids = set(self.lookup.values()) if not categories_any else set().union(
            *(self.by_category.get(c, set()) for c in categories_any))
        for name, cond in (attributes or {}).items():
            ids = {i for i in ids if _matches(dict(self.rows[i].attributes).get(name), cond)}
        return ids

    def apply(self, changes: Iterable[Change], *, unique: Callable[[tuple[int, ...], set[int]], int | None],
              embed: Callable[[list[tuple[int, ...]]], np.ndarray]) -> tuple[Catalog, Delta, list[Outcome]]:
        """The next catalogue after ``changes`` (in order), the index delta and one outcome per change.

        ``unique(prefix, taken)`` picks the uniqueness code of a new ID; ``embed(sids)`` -> (n, D) vectors.
        """
        w = _Work(list(self.rows), defaultdict(set, {k: set(v) for k, v in self.taken.items()}),
                  dict(self.lookup), dict(self.last_row), unique)
        outcomes = [w.retire(ch) if isinstance(ch, Retire) else w.upsert(ch) for ch in changes]
        dim = self.embeddings.shape[1]
        vectors = embed([w.rows[i].sid for i in w.new_rows]) if w.new_rows else np.zeros((0, dim))
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(w.new_rows), dim)
        emb = np.concatenate([self.embeddings, vectors]) if w.new_rows else self.embeddings
        gone = set(w.removed)
        add = [i for i in [*w.revived, *w.new_rows] if w.rows[i].live and i not in gone]
        old_live = sorted(i for i in gone if i < len(self.rows) and self.rows[i].live)
        delta = Delta(np.asarray(add, dtype=np.int64), emb[add] if add else vectors[:0],
                      np.asarray(old_live, dtype=np.int64))
        return Catalog(w.rows, emb, self.base_popularity), delta, outcomes


@dataclasses.dataclass
class _Work:
    """The next catalogue while a batch is applied (rows copied, never the current catalogue's)."""

    rows: list[CatalogRow]
    taken: defaultdict[tuple[int, ...], set[int]]
    lookup: dict[str, int]
    last: dict[str, int]
    unique: Callable[[tuple[int, ...], set[int]], int | None]
    new_rows: list[int] = dataclasses.field(default_factory=list)  # appended rows (need vectors)
    removed: list[int] = dataclasses.field(default_factory=list)  # rows leaving the index
    revived: list[int] = dataclasses.field(default_factory=list)  # dead rows back in the index

    def retire(self, ch: Retire) -> Outcome:
        idx = self.lookup.pop(ch.item_id, None)
        if idx is None:
            return Outcome(ch.item_id, "absent", None)
        self.rows[idx] = dataclasses.replace(self.rows[idx], live=False)
        self.removed.append(idx)
        return Outcome(ch.item_id, "retired", self.rows[idx].sid)

    def upsert(self, ch: Upsert) -> Outcome:
        meta: dict[str, Any] = {"title": ch.title, "text": ch.text, "categories": ch.categories,
                                "attributes": ch.attributes}
        idx = self.lookup.get(ch.item_id)
        if idx is None:  # new, or back after retirement
            prev = self.last.get(ch.item_id)
            if prev is not None and (self.rows[prev].origin == "trained" or ch.codes is None
                                     or _same_id(self.rows[prev].sid, ch)):
                self.rows[prev] = dataclasses.replace(self.rows[prev], live=True, **meta)  # its ID and vector
                self.lookup[ch.item_id] = prev
                self.revived.append(prev)
                return Outcome(ch.item_id, "created", self.rows[prev].sid)
            sid = None if ch.codes is None else self.new_sid(ch)
            if sid is None:
                return Outcome(ch.item_id, "uncoded", None)
            return self.append(CatalogRow(ch.item_id, sid, "added", **meta), "created")
        row = self.rows[idx]
        if row.origin == "added" and ch.codes is not None and not _same_id(row.sid, ch):
            sid = self.new_sid(ch)
            if sid is None:
                return Outcome(ch.item_id, "uncoded", row.sid)
            self.rows[idx] = dataclasses.replace(row, live=False)
            self.removed.append(idx)
            return self.append(CatalogRow(ch.item_id, sid, "added", **meta), "updated")
        updated = dataclasses.replace(row, **meta)
        if updated.meta() == row.meta():
            return Outcome(ch.item_id, "unchanged", row.sid)
        self.rows[idx] = updated
        return Outcome(ch.item_id, "updated", row.sid)

    def append(self, row: CatalogRow, status: Status) -> Outcome:
        self.rows.append(row)
        idx = len(self.rows) - 1
        self.lookup[row.item_id] = self.last[row.item_id] = idx
        self.taken[row.sid[:-1]].add(row.sid[-1])
        self.new_rows.append(idx)
        return Outcome(row.item_id, status, row.sid)

    def new_sid(self, ch: Upsert) -> tuple[int, ...] | None:
        assert ch.codes is not None
        prefix = ch.codes[:-1] if ch.full else ch.codes
        used = self.taken[prefix]
        if ch.full and ch.codes[-1] not in used:
            return ch.codes  # a given ID that is free keeps its uniqueness code
        code = self.unique(prefix, used)
        return None if code is None else (*prefix, code)


def _same_id(sid: tuple[int, ...], ch: Upsert) -> bool:
    """Whether ``ch.codes`` describe ``sid``: the same codes before the uniqueness level (that last code is
    the catalogue's to pick, so a repeated request with a given ID that collided stays unchanged)."""
    assert ch.codes is not None
    return (ch.codes[:-1] if ch.full else ch.codes) == sid[:-1]


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
