"""LC-Rec / LETTER layout: ``X.inter.json`` + optional ``X.item.json`` and ``X.index.json``.

``--input`` is the folder holding them, or the ``X.inter.json`` file itself (the other two are
looked up beside it with the same ``X`` prefix).

- ``X.inter.json``: ``{user: [item, ...]}``, each list oldest first (LC-Rec already applied 5-core).
- ``X.item.json``: ``{item: {"title", "description", "brand", "categories"}}``; categories is a comma
  string (a category path) or a list.
- ``X.index.json``: ``{item: ["<a_1>", "<b_2>", ...]}`` given semantic IDs -> ``given_sids``.

Users keep the file's key order; item ids are the JSON values as strings.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr

from model.config import DataConfig
from model.data.jsonio import read_validated
from model.data.sources.files import require_input, require_one
from model.data.sources.records import ItemMeta, SidMap, SourceRecord
from model.data.sources.text import meta_from_fields
from model.errors import SimGRError
from model.progress import progress

logger = logging.getLogger(__name__)

INTER_SUFFIX = ".inter.json"
_NOT_FOUND = "file not found"


class LcrecItem(BaseModel):
    """One entry of ``X.item.json``: Amazon-style side information, each field optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str | None = None  # display title
    description: str | list[Any] | None = None  # Amazon descriptions are sometimes lists of paragraphs
    brand: str | None = None  # maker, part of the encoder text
    categories: str | list[Any] | None = None  # a comma string (a path) or a (nested) list
    category: str | list[Any] | None = None  # the Amazon 2014 spelling of ``categories``


InterFile = dict[str, list[StrictInt | StrictStr]]  # X.inter.json: user -> item ids, oldest first
ItemFile = dict[str, LcrecItem]  # X.item.json: item -> side information


def _inter_file(path: Path) -> Path:
    if path.is_dir():
        return require_one(path, f"*{INTER_SUFFIX}", what="LC-Rec interaction file")
    if not path.name.endswith(INTER_SUFFIX):
        raise SimGRError(f"{path}: expected a folder or an X{INTER_SUFFIX} file for source 'lcrec'")
    return path


def _read_sequences(path: Path) -> dict[str, list[str]]:
    raw = read_validated(path, InterFile, what="LC-Rec interaction", missing=_NOT_FOUND)
    return {user: [str(i) for i in items] for user, items in raw.items()}


def _read_items(path: Path, cfg: DataConfig) -> dict[str, ItemMeta]:
    raw = read_validated(path, ItemFile, what="LC-Rec item", missing=_NOT_FOUND)
    return {item_id: meta_from_fields(fields.model_dump(exclude_none=True), max_chars=cfg.max_text_chars)
            for item_id, fields in progress(raw.items(), desc="items", total=len(raw))}


def _read_given_sids(path: Path) -> dict[str, list[str]]:
    return read_validated(path, SidMap, what="LC-Rec index", missing=_NOT_FOUND)


def read(*, input_path: Path | None, cfg: DataConfig) -> SourceRecord:
    """Read an LC-Rec dataset folder (see module docstring)."""
    inter_path = _inter_file(require_input(input_path, "lcrec"))
    prefix = inter_path.name[: -len(INTER_SUFFIX)]
    item_path = inter_path.with_name(f"{prefix}.item.json")
    index_path = inter_path.with_name(f"{prefix}.index.json")

    sequences = _read_sequences(inter_path)
    items = _read_items(item_path, cfg) if item_path.is_file() else {}
    given = _read_given_sids(index_path) if index_path.is_file() else None
    logger.info(
        "lcrec %s: %d users, item text for %d items, given SIDs for %d items",
        inter_path, len(sequences), len(items), len(given or {}),
    )
    return SourceRecord(name=prefix, origin=str(inter_path), sequences=sequences, items=items, given_sids=given)
