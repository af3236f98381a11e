"""Source readers for ``simgr prepare --source NAME``: one module per raw dataset layout.

Each reader is ``read(*, input_path: Path | None, cfg: DataConfig) -> SourceRecord`` and returns
chronological user sequences with original string ids plus whatever item side information the
source has; ``model/prepare.py`` does the id mapping, splitting and writing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from model.config import DataConfig
from model.data.sources import amazon2018, lcrec, movielens100k, recbole
from model.data.sources.records import SourceRecord
from model.errors import SimGRError


class Reader(Protocol):
    def __call__(self, *, input_path: Path | None, cfg: DataConfig) -> SourceRecord: ...


READERS: dict[str, Reader] = {
    "lcrec": lcrec.read,  # X.inter.json (+ X.item.json, X.index.json): LC-Rec / LETTER releases
    "recbole": recbole.read,  # RecBole atomic files NAME.inter (+ NAME.item)
    "amazon2018": amazon2018.read,  # raw Amazon Review 2018 ratings CSV + meta, LC-Rec filtering
    "movielens100k": movielens100k.read,  # fetched (GroupLens, else the recbole wheel) or --input
}

FETCHED = frozenset({"movielens100k"})  # the sources whose reader fetches the data when given no input path


def get_reader(name: str) -> Reader:
    """The reader registered under ``name``; SimGRError listing the choices otherwise."""
    try:
        return READERS[name]
    except KeyError:
        raise SimGRError(f"unknown source {name!r} (choose from {', '.join(sorted(READERS))})") from None



