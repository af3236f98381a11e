"""Raw Amazon Review 2018 category (Ni et al., EMNLP 2019), processed the way LC-Rec does.

``--input`` is either
- a folder holding exactly one ratings CSV (``*.csv``) and one meta file (``meta_*.json`` or
  ``meta_*.json.gz``), or
- the ratings CSV itself; the meta file is then ``meta_<CSV stem>.json[.gz]`` beside it, or else the
  only ``meta_*.json[.gz]`` in that folder.

Ratings CSV: ``item,user,rating,timestamp`` with no header. Meta: one object per line (JSON, or a
Python literal in older dumps) with ``asin``, ``title``, ``description`` (list or str), ``brand``,
``category`` (list).

Steps: (1) sort by timestamp (stable) and drop repeated user-item pairs, keeping the first;
(2) drop items without metadata or with an empty cleaned title; (3) iterative k-core with
``DataConfig.min_user_interactions`` / ``min_item_interactions``; (4) each user's items in time order.
Users keep the order in which they first appear in the CSV.
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from model.config import DataConfig
from model.data.sources.files import find_one, require_input, require_one
from model.data.sources.records import ItemMeta, SourceRecord
from model.data.sources.text import meta_from_fields
from model.errors import SimGRError
from model.progress import progress

logger = logging.getLogger(__name__)


class Rating(NamedTuple):
    time: float  # unix seconds
    line: int  # 1-based line in the CSV: tie-breaker and user order
    user: str
    item: str


def _meta_beside(csv_path: Path) -> Path:
    for name in (f"meta_{csv_path.stem}.json", f"meta_{csv_path.stem}.json.gz"):
        if (csv_path.parent / name).is_file():
            return csv_path.parent / name
    return _meta_in(csv_path.parent)


def _meta_in(folder: Path) -> Path:
    plain = find_one(folder, "meta_*.json", what="meta file")
    return plain or require_one(folder, "meta_*.json.gz", what="meta file")


def _locate(path: Path) -> tuple[Path, Path]:
    """(ratings CSV, meta file) for ``--input`` (see module docstring)."""
    if path.is_dir():
        return require_one(path, "*.csv", what="ratings CSV"), _meta_in(path)
    if path.suffix.lower() != ".csv":
        raise SimGRError(f"{path}: expected a folder or a ratings .csv file for source 'amazon2018'")
    return path, _meta_beside(path)


def read_ratings(path: Path) -> list[Rating]:
    """Ratings in file order; SimGRError naming the line when a row is malformed."""
    ratings: list[Rating] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            for line, row in enumerate(progress(csv.reader(handle), desc="ratings", unit="row"), start=1):
                if not row:
                    continue
                if len(row) < 4:
                    raise SimGRError(f"{path}: line {line}: expected item,user,rating,timestamp, got {len(row)} fields")
                try:
                    stamp = float(row[3])
                except ValueError:
                    raise SimGRError(f"{path}: line {line}: timestamp {row[3]!r} is not a number") from None
                ratings.append(Rating(stamp, line, row[1].strip(), row[0].strip()))
    except UnicodeDecodeError as exc:
        raise SimGRError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return ratings


def _lines(path: Path) -> Iterator[str]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            yield from handle
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise SimGRError(f"{path}: cannot read ({exc})") from None


def parse_meta_line(text: str, *, path: Path, line: int) -> dict[str, Any]:
    """One meta record: JSON first, then a Python literal (older dumps use single quotes)."""
    try:
        obj = json.loads(text)
    except ValueError:
        try:
            obj = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise SimGRError(f"{path}: line {line} is neither JSON nor a Python literal") from None
    if not isinstance(obj, dict):
        raise SimGRError(f"{path}: line {line} is not an object")
    return obj


def read_meta(path: Path, wanted: set[str], cfg: DataConfig) -> dict[str, ItemMeta]:
    """Cleaned metadata of the ``wanted`` items that have a non-empty title (first record per asin)."""
    metas: dict[str, ItemMeta] = {}
    for line, text in enumerate(progress(_lines(path), desc="meta", unit="line"), start=1):
        if not text.strip():
            continue
        obj = parse_meta_line(text, path=path, line=line)
        asin = str(obj.get("asin", ""))
        if asin not in wanted or asin in metas:
            continue
        meta = meta_from_fields(obj, max_chars=cfg.max_text_chars)
        if meta.title:
            metas[asin] = meta
    return metas


def dedup_first(ratings: list[Rating]) -> list[Rating]:
    """Chronological order (stable), keeping only the first rating of each user-item pair."""
    seen: set[tuple[str, str]] = set()
    kept: list[Rating] = []
    for rating in sorted(ratings, key=lambda r: (r.time, r.line)):
        if (rating.user, rating.item) not in seen:
            seen.add((rating.user, rating.item))
            kept.append(rating)
    return kept


def k_core(ratings: list[Rating], *, min_user: int, min_item: int) -> list[Rating]:
    """Drop users with < min_user and items with < min_item ratings until none is left to drop.

    Example (min 2): u1:{a,b} u2:{a,b} u3:{a,c} -> c goes (1 rating), then u3 (1 left) -> u1, u2 with a, b.
    """
    rounds = 0
    while True:
        users = Counter(r.user for r in ratings)
        items = Counter(r.item for r in ratings)
        kept = [r for r in ratings if users[r.user] >= min_user and items[r.item] >= min_item]
        rounds += 1
        if len(kept) == len(ratings):
            logger.info("k-core (%d/%d) stable after %d rounds: %d ratings", min_user, min_item, rounds, len(kept))
            return kept
        ratings = kept


def read(*, input_path: Path | None, cfg: DataConfig) -> SourceRecord:
    """Read and filter a raw Amazon 2018 category (see module docstring)."""
    csv_path, meta_path = _locate(require_input(input_path, "amazon2018"))
    raw = read_ratings(csv_path)
    ratings = dedup_first(raw)
    logger.info("%s: %d ratings, %d after dropping repeated user-item pairs", csv_path, len(raw), len(ratings))

    metas = read_meta(meta_path, {r.item for r in ratings}, cfg)
    ratings = [r for r in ratings if r.item in metas]
    logger.info("%s: titled metadata for %d items; %d ratings left", meta_path, len(metas), len(ratings))

    ratings = k_core(ratings, min_user=cfg.min_user_interactions, min_item=cfg.min_item_interactions)
    first_line: dict[str, int] = {}
    for r in ratings:
        first_line[r.user] = min(first_line.get(r.user, r.line), r.line)
    sequences: dict[str, list[str]] = {u: [] for u in sorted(first_line, key=first_line.__getitem__)}
    for r in ratings:  # already chronological
        sequences[r.user].append(r.item)
    kept_items = {r.item for r in ratings}
    items = {asin: meta for asin, meta in metas.items() if asin in kept_items}
    name = csv_path.stem
    return SourceRecord(name=name, origin=str(csv_path), sequences=sequences, items=items)
