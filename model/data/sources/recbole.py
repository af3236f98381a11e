"""RecBole atomic files: ``NAME.inter`` (+ optional ``NAME.item``), tab-separated with typed headers.

``--input`` is the folder holding them or the ``NAME.inter`` file itself. Example headers::

    user_id:token   item_id:token   rating:float    timestamp:float
    item_id:token   movie_title:token_seq   release_year:token  class:token_seq

Each user's interactions are sorted by ``timestamp`` (stable: ties keep file order; without a
timestamp column the file order is the time order). Users keep the order in which they first
appear in the file. Item text = title (+ " (year)") + brand + categories + description, where
present; categories are the ``class``/``genre`` column (token_seq: space-separated).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from model.config import DataConfig, from_dict
from model.data.sources.files import read_text, require_input, require_one
from model.data.sources.records import ItemMeta, SourceRecord
from model.data.sources.text import clean_text, compose_text
from model.errors import SimGRError
from model.progress import progress

logger = logging.getLogger(__name__)

TITLE_FIELDS = ("movie_title", "title", "item_name", "name")  # first present one is the title
YEAR_FIELDS = ("release_year", "year")
CATEGORY_FIELDS = ("class", "genre", "genres", "categories", "category")


class Column(BaseModel):
    """One ``name:type`` column of an atomic file's typed header."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)  # user_id, item_id, timestamp, movie_title, ...
    type: Literal["token", "token_seq", "float", "float_seq"]  # RecBole's four feature types


def _header(line: str, origin: str) -> tuple[list[str], list[str]]:
    """``"user_id:token\\titem_id:token"`` -> (names, types)."""
    raw: list[dict[str, str]] = []
    for column in line.rstrip("\r\n").split("\t"):
        name, sep, kind = column.partition(":")
        if not sep or not name:
            raise SimGRError(f"{origin}: header column {column!r} is not of the form name:type")
        raw.append({"name": name.strip(), "type": kind.strip()})
    columns = from_dict(list[Column], raw, origin=f"{origin}: header", what="header column")
    return [c.name for c in columns], [c.type for c in columns]


def _rows(text: str, origin: str) -> tuple[list[str], list[str], list[tuple[int, list[str]]]]:
    lines = text.splitlines()
    if not lines:
        raise SimGRError(f"{origin}: empty file (expected a typed header line)")
    names, types = _header(lines[0], origin)
    rows: list[tuple[int, list[str]]] = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        values = line.split("\t")
        if len(values) != len(names):
            raise SimGRError(f"{origin}: line {lineno} has {len(values)} columns, header has {len(names)}")
        rows.append((lineno, values))
    return names, types, rows


def _column(names: list[str], wanted: tuple[str, ...]) -> int | None:
    return next((names.index(w) for w in wanted if w in names), None)


def _sequences(text: str, origin: str) -> dict[str, list[str]]:
    names, _, rows = _rows(text, origin)
    for required in ("user_id", "item_id"):
        if required not in names:
            raise SimGRError(f"{origin}: header has no {required} column (columns: {', '.join(names)})")
    user_col, item_col = names.index("user_id"), names.index("item_id")
    time_col = _column(names, ("timestamp",))
    events: dict[str, list[tuple[float, str]]] = {}
    for lineno, values in progress(rows, desc="interactions", unit="row"):
        stamp = 0.0
        if time_col is not None:
            try:
                stamp = float(values[time_col])
            except ValueError:
                raise SimGRError(f"{origin}: line {lineno}: timestamp {values[time_col]!r} is not a number") from None
        events.setdefault(values[user_col], []).append((stamp, values[item_col]))
    # list.sort is stable, so equal timestamps keep file order
    return {user: [item for _, item in sorted(evs, key=lambda e: e[0])] for user, evs in events.items()}


def _items(text: str, origin: str, cfg: DataConfig) -> dict[str, ItemMeta]:
    names, types, rows = _rows(text, origin)
    if "item_id" not in names:
        raise SimGRError(f"{origin}: header has no item_id column (columns: {', '.join(names)})")
    item_col = names.index("item_id")
    title_col, year_col = _column(names, TITLE_FIELDS), _column(names, YEAR_FIELDS)
    cat_col = _column(names, CATEGORY_FIELDS)
    brand_col, desc_col = _column(names, ("brand",)), _column(names, ("description",))
    limit = cfg.max_text_chars

    def cell(values: list[str], col: int | None) -> str:
        return clean_text(values[col], max_chars=limit) if col is not None else ""

    items: dict[str, ItemMeta] = {}
    for _, values in rows:
        title, year = cell(values, title_col), cell(values, year_col)
        categories: tuple[str, ...] = ()
        if cat_col is not None:
            raw = values[cat_col].strip()
            pieces = raw.split() if types[cat_col].endswith("seq") else [raw]
            categories = tuple(dict.fromkeys(c for c in (clean_text(p, max_chars=limit) for p in pieces) if c))
        shown = f"{title} ({year})" if title and year else title
        encoder_text = compose_text(
            title=shown, brand=cell(values, brand_col), categories=categories,
            description=cell(values, desc_col), max_chars=limit,
        )
        items[values[item_col]] = ItemMeta(title=title or None, text=encoder_text, categories=categories)
    return items


def parse_atomic(
    *, name: str, inter_text: str, inter_origin: str, item_text: str | None, item_origin: str, cfg: DataConfig
) -> SourceRecord:
    """Build a SourceRecord from the contents of ``NAME.inter`` and (optionally) ``NAME.item``."""
    sequences = _sequences(inter_text, inter_origin)
    items = _items(item_text, item_origin, cfg) if item_text is not None else {}
    logger.info("recbole %s: %d users, metadata for %d items", inter_origin, len(sequences), len(items))
    return SourceRecord(name=name, origin=inter_origin, sequences=sequences, items=items)


def read_atomic(inter_path: Path, cfg: DataConfig) -> SourceRecord:
    """Read ``NAME.inter`` and the ``NAME.item`` beside it, if any."""
    item_path = inter_path.with_suffix(".item")
    return parse_atomic(
        name=inter_path.stem,
        inter_text=read_text(inter_path),
        inter_origin=str(inter_path),
        item_text=read_text(item_path) if item_path.is_file() else None,
        item_origin=str(item_path),
        cfg=cfg,
    )


def read(*, input_path: Path | None, cfg: DataConfig) -> SourceRecord:
    """Read a RecBole atomic-file dataset (see module docstring)."""
    path = require_input(input_path, "recbole")
    if path.is_dir():
        path = require_one(path, "*.inter", what="RecBole .inter file")
    elif path.suffix != ".inter":
        raise SimGRError(f"{path}: expected a folder or a NAME.inter file for source 'recbole'")
    return read_atomic(path, cfg)

