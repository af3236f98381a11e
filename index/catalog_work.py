"""One batch of catalogue changes in progress: overlays on the current catalogue, never its own state.

``Work`` reads the current ``Catalog`` and records what the batch changes (rows overridden or appended,
live flags, latest row per id, taken codes per prefix); ``Catalog.apply`` builds the next catalogue from
it. The current catalogue is untouched, so a failed or abandoned batch changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from index.rows import CatalogRow, Outcome, Status, Upsert

if TYPE_CHECKING:
    from index.catalog import Catalog


class Work:
    def __init__(self, cat: Catalog, unique: Callable[[tuple[int, ...], set[int]], int | None]) -> None:
        self.cat, self.unique = cat, unique
        self.changed: dict[int, CatalogRow] = dict(cat.changed)  # base rows overridden
        self.tail: list[CatalogRow] = list(cat.tail)  # rows after the base, this batch's appended ones last
        self.live: dict[int, bool] = {}  # live flags set by this batch
        self.latest: dict[str, int] = dict(cat.latest)
        self.taken: dict[tuple[int, ...], set[int]] = dict(cat.taken)  # sets copied before they change
        self._own: set[tuple[int, ...]] = set()  # prefixes whose set this batch copied
        self.new_rows: list[int] = []  # appended rows (need vectors)
        self.removed: list[int] = []  # rows leaving the index
        self.revived: list[int] = []  # dead rows back in the index

    def row(self, i: int) -> CatalogRow:
        b = len(self.cat.base)
        r = self.tail[i - b] if i >= b else self.changed.get(i) or self.cat.base.row(i)
        live = self.live.get(i, bool(self.cat.live[i]) if i < len(self.cat) else r.live)
        return r if r.live == live else dataclasses.replace(r, live=live)

    def set_row(self, i: int, row: CatalogRow) -> None:
        b = len(self.cat.base)
        if i >= b:
            self.tail[i - b] = row
        else:
            self.changed[i] = row
        self.live[i] = row.live

    def last(self, item_id: str) -> int | None:
        r = self.latest.get(item_id)
        return r if r is not None else self.cat.base.last_row(item_id)

    def lookup(self, item_id: str) -> int | None:
        r = self.last(item_id)
        return r if r is not None and self.row(r).live else None

    def used(self, prefix: tuple[int, ...]) -> set[int]:
        if prefix not in self._own:
            self.taken[prefix] = self.cat.used_codes(prefix)
            self._own.add(prefix)
        return self.taken[prefix]

    def retire(self, item_id: str) -> Outcome:
        idx = self.lookup(item_id)
        if idx is None:
            return Outcome(item_id, "absent", None)
        row = self.row(idx)
        self.set_row(idx, dataclasses.replace(row, live=False))
        self.removed.append(idx)
        return Outcome(item_id, "retired", row.sid)

    def upsert(self, ch: Upsert) -> Outcome:
        meta: dict[str, Any] = {"title": ch.title, "text": ch.text, "categories": ch.categories,
                                "attributes": ch.attributes}
        idx = self.lookup(ch.item_id)
        if idx is None:  # new, or back after retirement
            prev = self.last(ch.item_id)
            if prev is not None:
                old = self.row(prev)
                if old.origin == "trained" or ch.codes is None or _same_id(old.sid, ch):
                    self.set_row(prev, dataclasses.replace(old, live=True, **meta))  # its ID and vector
                    self.revived.append(prev)
                    return Outcome(ch.item_id, "created", old.sid)
            sid = None if ch.codes is None else self.new_sid(ch)
            if sid is None:
                return Outcome(ch.item_id, "uncoded", None)
            return self.append(CatalogRow(ch.item_id, sid, "added", **meta), "created")
        row = self.row(idx)
        if row.origin == "added" and ch.codes is not None and not _same_id(row.sid, ch):
            sid = self.new_sid(ch)
            if sid is None:
                return Outcome(ch.item_id, "uncoded", row.sid)
            self.set_row(idx, dataclasses.replace(row, live=False))
            self.removed.append(idx)
            return self.append(CatalogRow(ch.item_id, sid, "added", **meta), "updated")
        updated = dataclasses.replace(row, **meta)
        if updated.meta() == row.meta():
            return Outcome(ch.item_id, "unchanged", row.sid)
        self.set_row(idx, updated)
        return Outcome(ch.item_id, "updated", row.sid)

    def append(self, row: CatalogRow, status: Status) -> Outcome:
        idx = len(self.cat.base) + len(self.tail)
        self.tail.append(row)
        self.live[idx] = True
        self.latest[row.item_id] = idx
        self.used(row.sid[:-1]).add(row.sid[-1])
        self.new_rows.append(idx)
        return Outcome(row.item_id, status, row.sid)

    def new_sid(self, ch: Upsert) -> tuple[int, ...] | None:
        assert ch.codes is not None
        prefix = ch.codes[:-1] if ch.full else ch.codes
        used = self.used(prefix)
        if ch.full and ch.codes[-1] not in used:
            return ch.codes  # a given ID that is free keeps its uniqueness code
        code = self.unique(prefix, used)
        return None if code is None else (*prefix, code)


def _same_id(sid: tuple[int, ...], ch: Upsert) -> bool:
    """Whether ``ch.codes`` describe ``sid``: the same codes before the uniqueness level (that last code is
    the catalogue's to pick, so a repeated request with a given ID that collided stays unchanged)."""
    assert ch.codes is not None
    return (ch.codes[:-1] if ch.full else ch.codes) == sid[:-1]
