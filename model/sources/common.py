"""What every source reader shares: the normalized record, text cleaning, file helpers, progress bars.

A reader turns one raw dataset layout into a ``SourceRecord``: each user's chronological
item-id sequence (original string ids) plus whatever item side information the source has.
``model/prepare.py`` turns that record into the dataset directory; readers never write files
(except the MovieLens download cache).
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from model.errors import SimGRError

T = TypeVar("T")

_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>", re.DOTALL)  # HTML tags/comments, not "a < b > c"
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, kw_only=True)
class ItemMeta:
    """Side information of one item, already cleaned. Every field may be missing."""

    title: str | None = None  # display title
    text: str | None = None  # text for the semantic-ID encoder (title + brand + categories + description)
    categories: tuple[str, ...] = ()  # category path or genre set, outermost first


@dataclass(frozen=True, kw_only=True)
class SourceRecord:
    """A dataset as read from its source, before id mapping and splitting.

    ``sequences`` keeps insertion order: that order becomes the user index order.
    """

    name: str  # dataset name for dataset.json (the file stem, e.g. "Instruments")
    origin: str  # what was read (a path), for error and log messages
    sequences: dict[str, list[str]]  # user_id -> item ids, oldest first
    items: dict[str, ItemMeta] = field(default_factory=dict)  # item_id -> side info (may be empty)
    given_sids: dict[str, list[str]] | None = None  # item_id -> SID tokens when the source ships them


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """tqdm over ``iterable``; silent when stderr is not a TTY or ``SIMGR_NO_PROGRESS=1``."""
    disable = os.environ.get("SIMGR_NO_PROGRESS") == "1" or not sys.stderr.isatty()
    yield from tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, leave=False)


def clean_text(raw: Any, *, max_chars: int) -> str:
    """LC-Rec style cleaning: unescape HTML, drop tags, collapse whitespace; blank if >= max_chars.

    Lists (Amazon descriptions) are joined with spaces first. Long texts are blanked rather than
    cut because in the Amazon dumps they are mostly scraped page junk.
    Example: ``clean_text(["Nice &amp; <b>loud</b>", " amp "], max_chars=2000) -> "Nice & loud amp"``
    """
    if raw is None:
        return ""
    if isinstance(raw, (list, tuple)):
        raw = " ".join(str(part) for part in raw if part is not None)
    text = html.unescape(str(raw))
    text = _TAG.sub(" ", text)
    text = _SPACE.sub(" ", text).strip()
    return "" if len(text) >= max_chars else text


def truncate(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars`` characters, at a word boundary when there is one."""
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > max_chars // 2 else cut


def compose_text(
    *,
    title: str | None,
    brand: str | None = None,
    categories: Sequence[str] = (),
    description: str | None = None,
    max_chars: int,
) -> str | None:
    """One encoder text per item: ``"Title. Brand: B. Categories: a, b. Description"`` (parts present only).

    Returns None when no part is present. The result is cut to ``max_chars`` (word boundary).
    """
    parts: list[str] = []
    if title:
        parts.append(title)
    if brand:
        parts.append(f"Brand: {brand}")
    if categories:
        parts.append("Categories: " + ", ".join(categories))
    if description:
        parts.append(description)
    parts = [p.strip().rstrip(".").strip() for p in parts]
    parts = [p for p in parts if p]
    if not parts:
        return None
    return truncate(". ".join(parts) + ".", max_chars)


def split_categories(raw: Any, *, max_chars: int) -> tuple[str, ...]:
    """Categories as a tuple: a comma string ``"A,B,C"`` or a list (nested lists are flattened)."""
    if raw is None:
        return ()
    if isinstance(raw, str):
        pieces: list[Any] = raw.split(",")
    elif isinstance(raw, (list, tuple)):
        pieces = []
        for part in raw:
            pieces.extend(part if isinstance(part, (list, tuple)) else [part])
    else:
        pieces = [raw]
    cleaned = (clean_text(p, max_chars=max_chars) for p in pieces)
    return tuple(dict.fromkeys(c for c in cleaned if c))  # drop empties and repeats, keep order


def meta_from_fields(fields: dict[str, Any], *, max_chars: int) -> ItemMeta:
    """Amazon-style fields (title, brand, categories|category, description) -> cleaned ItemMeta."""
    title = clean_text(fields.get("title"), max_chars=max_chars)
    brand = clean_text(fields.get("brand"), max_chars=max_chars)
    categories = split_categories(fields.get("categories", fields.get("category")), max_chars=max_chars)
    description = clean_text(fields.get("description"), max_chars=max_chars)
    text = compose_text(
        title=title, brand=brand, categories=categories, description=description, max_chars=max_chars
    )
    return ItemMeta(title=title or None, text=text, categories=categories)


def require_input(input_path: Path | None, source: str) -> Path:
    """The ``--input`` path, which must exist."""
    if input_path is None:
        raise SimGRError(f"source '{source}' needs --input PATH")
    path = Path(input_path)
    if not path.exists():
        raise SimGRError(f"{path}: no such file or directory")
    return path


def read_text(path: Path) -> str:
    """A text file as str (UTF-8, falling back to Latin-1); SimGRError when it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SimGRError(f"{path}: file not found") from None
    except OSError as exc:
        raise SimGRError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_json(path: Path) -> Any:
    """Parse a JSON file; SimGRError naming the file and position when it is missing or malformed."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SimGRError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def find_one(folder: Path, pattern: str, *, what: str) -> Path | None:
    """The single file in ``folder`` matching ``pattern``, None when there is none."""
    matches = sorted(p for p in folder.glob(pattern) if p.is_file())
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise SimGRError(f"{folder}: more than one {what} ({names}); point --input at one of them")
    return matches[0] if matches else None


def require_one(folder: Path, pattern: str, *, what: str) -> Path:
    """Like ``find_one`` but the file must be there."""
    found = find_one(folder, pattern, what=what)
    if found is None:
        raise SimGRError(f"{folder}: no {what} ({pattern}) found")
    return found
