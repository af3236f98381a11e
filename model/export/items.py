"""Item records of the living catalogue: the bundle's item table rows, and the upsert record that both
``PUT /items`` and ``simgr catalog apply --changes`` accept (pydantic, extra="forbid", strict types)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)

from index.catalog import CatalogRow
from model.data.jsonio import iter_jsonl
from model.errors import SimGRError
from model.semantic_ids.assign import codes_to_tokens

MAX_ITEM_ID = 128  # characters in an item id (as the service's ids)
MAX_BATCH = 1000  # records per upsert batch
AttrValue = StrictStr | StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)] | StrictBool
ItemIdStr = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ITEM_ID)]
Text = Annotated[str, StringConstraints(max_length=100_000)]


class ItemUpsert(BaseModel):
    """One item to add or update: needs a non-empty title, a non-empty text, or a semantic ID."""

    model_config = ConfigDict(extra="forbid", strict=True)
    item_id: ItemIdStr
    title: Text | None = None
    text: Text | None = None
    categories: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] | None = Field(None, max_length=64)
    attributes: dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], AttrValue] | None = Field(
        None, max_length=64)
    sid: list[Annotated[str, StringConstraints(max_length=32)]] | None = Field(None, min_length=1, max_length=8)

    @model_validator(mode="after")
    def _codable(self) -> ItemUpsert:
        if not (self.title or "").strip() and not (self.text or "").strip() and self.sid is None:
            raise ValueError("an item needs a non-empty title, a non-empty text, or a sid")
        return self

    def attribute_pairs(self) -> tuple[tuple[str, str | int | float | bool], ...]:
        return tuple(sorted((self.attributes or {}).items()))


class ItemRecord(BaseModel):
    """One line of the bundle's items.jsonl, in index order."""

    model_config = ConfigDict(extra="forbid")
    idx: int = Field(ge=0)
    item_id: str = Field(min_length=1)
    sid: list[str] = Field(min_length=1)
    title: str | None = None
    text: str | None = None
    categories: list[str] = Field(default_factory=list)
    attributes: dict[str, AttrValue] = Field(default_factory=dict)
    origin: Literal["trained", "added"] = "trained"


class UpsertLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: Literal["upsert"]
    item: ItemUpsert


class RetireLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: Literal["retire"]
    item_id: ItemIdStr


def read_items(path: Path) -> list[ItemRecord]:
    """items.jsonl -> records in index order (SimGRError naming the file and line)."""
    out: list[ItemRecord] = []
    for n, raw in iter_jsonl(path, missing="missing from the bundle"):
        try:
            rec = ItemRecord.model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            raise SimGRError(f"{path}:{n}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
        if rec.idx != len(out):
            raise SimGRError(f"{path}:{n}: expected idx {len(out)}, got {rec.idx}")
        out.append(rec)
    if not out:
        raise SimGRError(f"{path}: no items")
    return out


def write_items(path: Path, rows: Sequence[CatalogRow]) -> None:
    """Rows -> items.jsonl (idx = line number)."""
    with open(path, "w") as f:
        for i, (row, sid) in enumerate(zip(rows, codes_to_tokens(np.asarray(_codes(rows), dtype=np.int64)), strict=True)):
            rec = ItemRecord(idx=i, item_id=row.item_id, sid=sid, title=row.title, text=row.text,
                             categories=list(row.categories), attributes=dict(row.attributes), origin=row.origin)
            f.write(rec.model_dump_json() + "\n")


def _codes(rows: Sequence[CatalogRow]) -> list[list[int]]:
    return [list(r.sid) for r in rows]


def read_changes(path: Path) -> list[UpsertLine | RetireLine]:
    """changes.jsonl: ``{"op": "upsert", "item": {...}}`` or ``{"op": "retire", "item_id": "..."}`` lines."""
    out: list[UpsertLine | RetireLine] = []
    for n, raw in iter_jsonl(path, missing="not found"):
        try:
            op = raw.get("op") if isinstance(raw, dict) else None
            out.append(RetireLine.model_validate(raw) if op == "retire" else UpsertLine.model_validate(raw))
        except ValidationError as e:
            err = e.errors()[0]
            raise SimGRError(f"{path}:{n}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    return out


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
