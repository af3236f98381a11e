"""Load a dataset directory written by ``simgr prepare`` (model/data/prepare.py).

    ds = Dataset.load("data/instruments")
    ds.train_sequences()                       # items[:-2] per user
    ds.eval_examples("test", max_history=20)   # (histories, targets), leave-one-out
    ds.popularity()                            # (n_items,) train-part interaction counts

Splits are derived from ``sequences.jsonl`` (the split/ files hold the same data for other tools).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    StrictStr,
    model_serializer,
    with_config,
)

from model.config import STRICT_FIELDS, from_dict
from model.data.jsonio import iter_validated_jsonl, read_indexed_jsonl, read_json
from model.errors import SimGRError

FORMAT_VERSION = 1  # dataset.json "format_version"; bump on layout changes
_MISSING = "missing; run `simgr prepare` for this directory"
MIN_INTERACTIONS = 3  # prepare drops shorter users; leave-one-out needs a train item, a valid and a test target


class DatasetInfo(BaseModel):
    """``dataset.json``: the summary ``simgr prepare`` writes last, so a directory without it is unfinished."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format_version: int = FORMAT_VERSION  # layout of the dataset directory
    name: str  # dataset name (the source's file stem, e.g. "Instruments")
    source: str  # the reader that produced it (lcrec, recbole, ...)
    n_users: int = Field(ge=0)  # lines of sequences.jsonl
    n_items: int = Field(ge=0)  # lines of items.jsonl
    n_interactions: int = Field(ge=0)  # total sequence length
    n_train_samples: int = Field(ge=0)  # prefix samples of items[:-2]
    max_history: int = Field(ge=1)  # history cut of the split/ files
    has_text: bool  # some item has encoder text (else semantic IDs must be given)
    has_categories: bool  # some item has categories (category entropy is computable)
    has_given_sids: bool  # given_sids.json was written
    avg_seq_len: float = Field(ge=0)  # n_interactions / n_users
    # what `prepare --source events` read and dropped (absent for the research sources)
    rows_read: int | None = Field(default=None, ge=0)  # log rows read
    rows_kept: int | None = Field(default=None, ge=0)  # rows that became interactions
    rows_dropped: dict[str, int] | None = None  # reason -> rows (missing_field, event_type, ..., k_core)
    time_formats: list[str] | None = None  # epoch_seconds, epoch_milliseconds, iso8601, timestamp
    first_timestamp: str | None = None  # earliest kept interaction, ISO-8601 UTC
    last_timestamp: str | None = None  # latest kept interaction, ISO-8601 UTC

    @model_serializer(mode="wrap")
    def _omit_absent_accounting(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The events keys appear only when set: a research source's dataset.json is unchanged."""
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None or k not in _EVENTS_KEYS}


_EVENTS_KEYS = frozenset({"rows_read", "rows_kept", "rows_dropped", "time_formats", "first_timestamp",
                          "last_timestamp"})


def read_info(root: Path) -> DatasetInfo:
    """DATA_DIR/dataset.json, validated (SimGRError naming the file and the field)."""
    path = root / "dataset.json"
    raw = read_json(path, missing=_MISSING)
    if not isinstance(raw, dict) or raw.get("format_version") != FORMAT_VERSION:
        raise SimGRError(f"{path}: unsupported format_version (expected {FORMAT_VERSION})")
    return from_dict(DatasetInfo, raw, origin=path, what="dataset.json")


@with_config(STRICT_FIELDS)
@dataclass(frozen=True, kw_only=True)
class Item:
    """One line of items.jsonl."""

    idx: int  # dense index 0..N-1
    item_id: StrictStr  # the source's original id
    title: str | None = None  # display title, None without metadata
    text: str | None = None  # encoder text (title + brand + categories + description), None without metadata
    categories: tuple[str, ...] = ()  # category path or genre set, outermost first
    attributes: dict[str, Any] = field(default_factory=dict)  # other item-table columns (events source)


@with_config(STRICT_FIELDS)
@dataclass(frozen=True, kw_only=True)
class _SequenceRow:
    """One line of sequences.jsonl."""

    user_id: StrictStr  # the source's original id
    items: list[StrictInt] = field(default_factory=list)  # item indices, oldest first


def load_items(path: Path) -> list[Item]:
    """items.jsonl -> items in idx order (SimGRError naming the file and line)."""
    return read_indexed_jsonl(path, Item, what="items.jsonl", missing=_MISSING)


def _load_sequences(path: Path, n_items: int) -> tuple[list[str], list[list[int]]]:
    user_ids: list[str] = []
    sequences: list[list[int]] = []
    for lineno, row in iter_validated_jsonl(path, _SequenceRow, what="sequences.jsonl", missing=_MISSING):
        seq = row.items
        if len(seq) < MIN_INTERACTIONS:
            raise SimGRError(f"{path}: line {lineno}: user {row.user_id!r} has {len(seq)} < {MIN_INTERACTIONS} items")
        if not all(0 <= i < n_items for i in seq):
            raise SimGRError(f"{path}: line {lineno}: item indices must be integers in [0, {n_items})")
        user_ids.append(row.user_id)
        sequences.append(seq)
    return user_ids, sequences


@dataclass(frozen=True, eq=False)  # identity equality: comparing 200k-element lists is never wanted
class Dataset:
    """A prepared dataset: items, per-user chronological sequences, and leave-one-out views."""

    root: Path
    info: DatasetInfo  # dataset.json
    items: list[Item]  # idx order
    sequences: list[list[int]]  # user idx -> item idx, oldest first
    user_ids: list[str]  # user idx -> original id

    @classmethod
    def load(cls, root: str | Path) -> Dataset:
        """Read DATA_DIR; SimGRError naming the file when something is missing or inconsistent."""
        root = Path(root)
        if not root.is_dir():
            raise SimGRError(f"{root}: not a dataset directory (run `simgr prepare --out {root}` first)")
        info = read_info(root)
        items = load_items(root / "items.jsonl")
        user_ids, sequences = _load_sequences(root / "sequences.jsonl", len(items))
        for name, expected, got in (("n_items", info.n_items, len(items)), ("n_users", info.n_users, len(user_ids))):
            if expected != got:
                raise SimGRError(f"{root / 'dataset.json'}: {name} is {expected} but the files hold {got}")
        return cls(root=root, info=info, items=items, sequences=sequences, user_ids=user_ids)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def item_ids(self) -> list[str]:
        """Original item ids in idx order."""
        return [item.item_id for item in self.items]

    def train_sequences(self) -> list[list[int]]:
        """``items[:-2]`` per user (the part training may see)."""
        return [seq[:-2] for seq in self.sequences]

    def eval_examples(
        self, split: Literal["valid", "test"], *, max_history: int = 20
    ) -> tuple[list[list[int]], list[int]]:
        """Leave-one-out (histories, targets): valid predicts items[-2] from items[:-2], test items[-1]
        from items[:-1]; histories keep their last ``max_history`` items."""
        if max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {max_history}")
        if split == "valid":
            cut = -2
        elif split == "test":
            cut = -1
        else:
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        histories = [seq[:cut][-max_history:] for seq in self.sequences]
        targets = [seq[cut] for seq in self.sequences]
        return histories, targets

    def popularity(self, *, all_interactions: bool = False) -> np.ndarray:
        """(n_items,) int64 interaction counts over the train part ``items[:-2]`` (or every interaction)."""
        cut = None if all_interactions else -2
        flat = np.fromiter((i for seq in self.sequences for i in seq[:cut]), dtype=np.int64)
        return np.bincount(flat, minlength=self.n_items).astype(np.int64)  # (N,)
