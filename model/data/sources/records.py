"""The normalized record every source reader returns: user sequences plus item side information.

A reader turns one raw dataset layout into a ``SourceRecord``: each user's chronological
item-id sequence (original string ids) plus whatever item side information the source has.
``model/data/prepare.py`` turns that record into the dataset directory; readers never write files
(except the MovieLens download cache).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, StrictStr

# item_id -> its semantic-ID tokens (["<a_1>", "<b_2>", ...]): X.index.json, given_sids.json, semantic_ids.json
SidMap = dict[str, Annotated[list[StrictStr], Field(min_length=1)]]


@dataclass(frozen=True, kw_only=True)
class ItemMeta:
    """Side information of one item, already cleaned. Every field may be missing."""

    title: str | None = None  # display title
    text: str | None = None  # text for the semantic-ID encoder (title + brand + categories + description)
    categories: tuple[str, ...] = ()  # category path or genre set, outermost first
    attributes: dict[str, Any] = field(default_factory=dict)  # other item-table columns (JSON values)


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
