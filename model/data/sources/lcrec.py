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

from model.config import DataConfig
from model.data.jsonio import read_json
from model.data.sources.files import require_input, require_one
from model.data.sources.records import ItemMeta, SourceRecord
from model.data.sources.text import meta_from_fields
from model.errors import SimGRError
from model.progress import progress

logger = logging.getLogger(__name__)

INTER_SUFFIX = ".inter.json"


def _inter_file(path: Path) -> Path:
    if path.is_dir():
        return require_one(path, f"*{INTER_SUFFIX}", what="LC-Rec interaction file")
    if not path.name.endswith(INTER_SUFFIX):
        raise SimGRError(f"{path}: expected a folder or an X{INTER_SUFFIX} file for source 'lcrec'")
    return path


def _read_sequences(path: Path) -> dict[str, list[str]]:
    raw = read_json(path, missing="file not found")
    if not isinstance(raw, dict):
        raise SimGRError(f"{path}: expected a JSON object {{user: [item, ...]}}, got {type(raw).__name__}")
    sequences: dict[str, list[str]] = {}
    for user, items in raw.items():
        if not isinstance(items, list) or not all(isinstance(i, (int, str)) for i in items):
            raise SimGRError(f"{path}: user {user!r} must map to a list of item ids")
        sequences[str(user)] = [str(i) for i in items]
    return sequences


def _read_items(path: Path, cfg: DataConfig) -> dict[str, ItemMeta]:
    raw = read_json(path, missing="file not found")
    if not isinstance(raw, dict):
        raise SimGRError(f"{path}: expected a JSON object {{item: {{title, ...}}}}, got {type(raw).__name__}")
    items: dict[str, ItemMeta] = {}
    for item_id, fields in progress(raw.items(), desc="items", total=len(raw)):
        if not isinstance(fields, dict):
            raise SimGRError(f"{path}: item {item_id!r} must map to an object with title/description/...")
        items[str(item_id)] = meta_from_fields(fields, max_chars=cfg.max_text_chars)
    return items


def _read_given_sids(path: Path) -> dict[str, list[str]]:
    raw = read_json(path, missing="file not found")
    if not isinstance(raw, dict):
        raise SimGRError(f"{path}: expected a JSON object {{item: [token, ...]}}, got {type(raw).__name__}")
    sids: dict[str, list[str]] = {}
    for item_id, tokens in raw.items():
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
            raise SimGRError(f"{path}: item {item_id!r} must map to a non-empty list of token strings")
        sids[str(item_id)] = list(tokens)
    return sids


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
