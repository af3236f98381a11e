"""Item records of the living catalogue: writing the bundle's item table (``BundleItem`` rows), and the
upsert record that both ``PUT /items`` and ``simgr catalog apply --changes`` accept (pydantic,
extra="forbid", strict types)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from index.catalog import CatalogRow
from model.config import to_dict
from model.data.jsonio import iter_validated_jsonl
from model.export.manifest import AttrValue, BundleItem
from model.semantic_ids.assign import codes_to_tokens

MAX_ITEM_ID = 128  # characters in an item id (as the service's ids)
MAX_BATCH = 1000  # records per upsert batch
ItemIdStr = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ITEM_ID)]
Text = Annotated[str, StringConstraints(max_length=100_000)]


class ItemUpsert(BaseModel):
    """One item to add or update: needs a non-empty title, a non-empty text, or a semantic ID."""

    model_config = ConfigDict(extra="forbid", strict=True)
    item_id: ItemIdStr
    title: Text | None = None
    text: Text | None = None
    categories: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] | None = Field(default=None, max_length=64)
    attributes: dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], AttrValue] | None = Field(
        default=None, max_length=64)
    sid: list[Annotated[str, StringConstraints(max_length=32)]] | None = Field(default=None, min_length=1, max_length=8)

    @model_validator(mode="after")
    def _codable(self) -> ItemUpsert:
        if not (self.title or "").strip() and not (self.text or "").strip() and self.sid is None:
            raise ValueError("an item needs a non-empty title, a non-empty text, or a sid")
        return self

    def attribute_pairs(self) -> tuple[tuple[str, str | int | float | bool], ...]:
        return tuple(sorted((self.attributes or {}).items()))


class UpsertLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: Literal["upsert"]
    item: ItemUpsert


class RetireLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: Literal["retire"]
    item_id: ItemIdStr


def write_items(path: Path, rows: Sequence[CatalogRow]) -> None:
    """Rows -> items.jsonl (idx = line number)."""
    with open(path, "w") as f:
        for i, (row, sid) in enumerate(zip(rows, codes_to_tokens(np.asarray(_codes(rows), dtype=np.int64)), strict=True)):
            rec = BundleItem(idx=i, item_id=row.item_id, sid=sid, title=row.title, text=row.text,
                             categories=list(row.categories), attributes=dict(row.attributes), origin=row.origin)
            f.write(json.dumps(to_dict(rec)) + "\n")


def _codes(rows: Sequence[CatalogRow]) -> list[list[int]]:
    return [list(r.sid) for r in rows]


ChangeLine = Annotated[UpsertLine | RetireLine, Field(discriminator="op")]


def read_changes(path: Path) -> list[UpsertLine | RetireLine]:
    """changes.jsonl: ``{"op": "upsert", "item": {...}}`` or ``{"op": "retire", "item_id": "..."}`` lines."""
    rows: Iterable[tuple[int, UpsertLine | RetireLine]] = iter_validated_jsonl(
        path, ChangeLine, what="catalogue change", missing="not found")  # type: ignore[arg-type]
    return [line for _, line in rows]


def popularity_by_category(rows: Sequence[CatalogRow], order: Sequence[int]) -> dict[str, list[str]]:
    """Item ids per category, most popular first (the global order restricted to the category)."""
    out: dict[str, list[str]] = {}
    for i in order:
        for c in rows[i].categories:
            out.setdefault(c, []).append(rows[i].item_id)
    return out


def write_popularity(root: Path, rows: Sequence[CatalogRow], order: Sequence[int]) -> None:
    (root / "popularity.json").write_text(json.dumps([rows[i].item_id for i in order]) + "\n")
    (root / "popularity_by_category.json").write_text(json.dumps(popularity_by_category(rows, order)) + "\n")
