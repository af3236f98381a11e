"""The item table of ``prepare --source events``: id, title, text columns and categories become the
item's text (one template, ``compose_text``); every other column is kept as an item attribute."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from model.config import EventsConfig
from model.data.sources.arrow_files import read_table
from model.data.sources.records import ItemMeta
from model.data.sources.text import clean_text, compose_text, split_categories
from model.errors import SimGRError

log = logging.getLogger(__name__)
_DEFAULTS = EventsConfig()


def _json_value(value: Any) -> Any:
    """An attribute value as JSON: dates as ISO strings, bytes as text, containers recursively."""
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def _check_columns(path: Path, names: list[str], cfg: EventsConfig, id_col: str) -> list[str]:
    """The text columns present; a column named on the command line (not a default) must exist."""
    if id_col not in names:
        raise SimGRError(f"{path}: no item id column {id_col!r} (columns: {', '.join(names)}); "
                         "name it with --item-id-col")
    for flag, given, default in (("--title-col", cfg.title_col, _DEFAULTS.title_col),
                                 ("--category-col", cfg.category_col, _DEFAULTS.category_col)):
        if given and given != default and given not in names:
            raise SimGRError(f"{path}: no column {given!r} ({flag}; columns: {', '.join(names)})")
    text_cols = [c for c in cfg.text_cols if c in names]
    absent = [c for c in cfg.text_cols if c not in names]
    if absent and cfg.text_cols != _DEFAULTS.text_cols:
        raise SimGRError(f"{path}: no column {absent[0]!r} (--text-cols; columns: {', '.join(names)})")
    return text_cols


def _categories(raw: Any, cfg: EventsConfig, max_chars: int) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = raw.split(cfg.category_sep) if cfg.category_sep else [raw]
    return split_categories(raw, max_chars=max_chars)


def _meta(row: dict[str, Any], *, cfg: EventsConfig, text_cols: list[str], attr_cols: list[str],
          max_chars: int) -> ItemMeta:
    title = clean_text(row.get(cfg.title_col), max_chars=max_chars) if cfg.title_col else ""
    categories = _categories(row.get(cfg.category_col), cfg, max_chars) if cfg.category_col else ()
    description = " ".join(t for t in (clean_text(row.get(c), max_chars=max_chars) for c in text_cols) if t)
    text = compose_text(title=title, categories=categories, description=description, max_chars=max_chars)
    attributes = {c: _json_value(row[c]) for c in attr_cols if row.get(c) is not None}
    return ItemMeta(title=title or None, text=text, categories=categories, attributes=attributes)


def read_item_table(path: Path, cfg: EventsConfig, *, item_col: str, max_chars: int) -> tuple[pa.Array, dict[str, ItemMeta]]:
    """(every item id in the table, item id -> metadata). A repeated id keeps its first row."""
    id_col = cfg.item_id_col or item_col
    table = read_table(path, strings=[id_col])
    text_cols = _check_columns(path, table.column_names, cfg, id_col)
    ids = table.column(id_col)
    if not pa.types.is_string(ids.type):
        ids = pc.cast(ids, pa.string())
    table = table.set_column(table.column_names.index(id_col), id_col, ids)
    table = table.filter(pc.and_(pc.is_valid(ids), pc.not_equal(pc.utf8_length(ids), 0)))
    if not table.num_rows:
        raise SimGRError(f"{path}: the item table has no rows with an item id")
    used = {id_col, cfg.title_col, cfg.category_col, *text_cols}
    attr_cols = [c for c in table.column_names if c not in used]
    metas: dict[str, ItemMeta] = {}
    for row in table.to_pylist():
        item = str(row[id_col])
        if item not in metas:
            metas[item] = _meta(row, cfg=cfg, text_cols=text_cols, attr_cols=attr_cols, max_chars=max_chars)
    if len(metas) < table.num_rows:
        log.warning("%s: %d rows repeat an item id; the first row of each is used", path,
                    table.num_rows - len(metas))
    return pa.array(list(metas), type=pa.string()), metas
