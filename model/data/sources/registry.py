"""Source readers for ``simgr prepare --source NAME``: one module per raw dataset layout.

Each reader is ``read(*, input_path: Path | None, cfg: DataConfig) -> SourceRecord`` and returns
chronological user sequences with original string ids plus whatever item side information the
source has; ``model/prepare.py`` does the id mapping, splitting and writing.

The names live here without their modules, so the CLI can offer them as choices at start-up and
import only the reader a run asks for.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from model.errors import SimGRError

if TYPE_CHECKING:
    from model.config import DataConfig
    from model.data.sources.records import SourceRecord


class Reader(Protocol):
    def __call__(self, *, input_path: Path | None, cfg: DataConfig) -> SourceRecord: ...


SOURCES: dict[str, str] = {  # name (= its module under model.data.sources) -> what it reads
    "lcrec": "X.inter.json (+ X.item.json, X.index.json): LC-Rec / LETTER releases",
    "recbole": "RecBole atomic files NAME.inter (+ NAME.item)",
    "amazon2018": "raw Amazon Review 2018 ratings CSV + meta, LC-Rec filtering",
    "movielens100k": "MovieLens-100k: fetched (GroupLens, else the recbole wheel) or --input",
}

FETCHED = frozenset({"movielens100k"})  # the sources whose reader fetches the data when given no input path


def get_reader(name: str) -> Reader:
    """The reader registered under ``name``; SimGRError listing the choices otherwise."""
    if name not in SOURCES:
        raise SimGRError(f"unknown source {name!r} (choose from {', '.join(sorted(SOURCES))})")
    return importlib.import_module(f"{__package__}.{name}").read
