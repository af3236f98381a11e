"""Item text: LC-Rec style cleaning, category splitting, and the one template that turns an item's
fields into the text the semantic-ID encoder sees."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

from model.data.sources.records import ItemMeta

_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>", re.DOTALL)  # HTML tags/comments, not "a < b > c"
_SPACE = re.compile(r"\s+")


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
