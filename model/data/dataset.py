"""Load a dataset directory written by ``simgr prepare`` (model/prepare.py).

    ds = Dataset.load("data/instruments")
    ds.train_sequences()                       # items[:-2] per user
    ds.eval_examples("test", max_history=20)   # (histories, targets), leave-one-out
    ds.popularity()                            # (n_items,) train-part interaction counts

Splits are derived from ``sequences.jsonl`` (the split/ files hold the same data for other tools).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from model.data.jsonio import iter_jsonl, read_json
from model.errors import SimGRError

FORMAT_VERSION = 1  # the dataset.json format this loader reads
MIN_INTERACTIONS = 3  # prepare drops shorter users; leave-one-out needs 3


@dataclass(frozen=True)
class Item:
    idx: int  # dense index 0..N-1
    item_id: str  # the source's original id
    title: str | None
    text: str | None  # encoder text (title + brand + categories + description), None without metadata
    categories: tuple[str, ...]


_MISSING = "missing; run `simgr prepare` for this directory"


def load_items(path: Path) -> list[Item]:
    """items.jsonl -> items in idx order (SimGRError naming the file and line)."""
    items: list[Item] = []
    for lineno, row in iter_jsonl(path, missing=_MISSING):
        try:
            idx, item_id = row["idx"], row["item_id"]
            title, text, categories = row.get("title"), row.get("text"), row.get("categories") or []
        except KeyError as exc:
            raise SimGRError(f"{path}: line {lineno} has no {exc.args[0]!r} field") from None
        if idx != len(items) or not isinstance(item_id, str):
            raise SimGRError(f"{path}: line {lineno}: expected idx {len(items)} with a string item_id")
        items.append(Item(idx=idx, item_id=item_id, title=title, text=text,
                          categories=tuple(str(c) for c in categories)))
    return items


def _load_sequences(path: Path, n_items: int) -> tuple[list[str], list[list[int]]]:
    user_ids: list[str] = []
    sequences: list[list[int]] = []
    for lineno, row in iter_jsonl(path, missing=_MISSING):
        user_id, seq = row.get("user_id"), row.get("items")
        if not isinstance(user_id, str) or not isinstance(seq, list):
            raise SimGRError(f"{path}: line {lineno} needs a string user_id and a list of items")
        if len(seq) < MIN_INTERACTIONS:
            raise SimGRError(f"{path}: line {lineno}: user {user_id!r} has {len(seq)} < 3 items")
        if not all(isinstance(i, int) and 0 <= i < n_items for i in seq):
            raise SimGRError(f"{path}: line {lineno}: item indices must be integers in [0, {n_items})")
        user_ids.append(user_id)
        sequences.append(seq)
    return user_ids, sequences


@dataclass(frozen=True, eq=False)  # identity equality: comparing 200k-element lists is never wanted
class Dataset:
    """A prepared dataset: items, per-user chronological sequences, and leave-one-out views."""

    root: Path
    info: dict[str, Any]  # dataset.json
    items: list[Item]  # idx order
    sequences: list[list[int]]  # user idx -> item idx, oldest first
    user_ids: list[str]  # user idx -> original id

    @classmethod
    def load(cls, root: str | Path) -> Dataset:
        """Read DATA_DIR; SimGRError naming the file when something is missing or inconsistent."""
        root = Path(root)
        if not root.is_dir():
            raise SimGRError(f"{root}: not a dataset directory (run `simgr prepare --out {root}` first)")
        info = read_json(root / "dataset.json", missing=_MISSING)
        if not isinstance(info, dict) or info.get("format_version") != FORMAT_VERSION:
            raise SimGRError(f"{root / 'dataset.json'}: unsupported format_version (expected {FORMAT_VERSION})")
        items = load_items(root / "items.jsonl")
        user_ids, sequences = _load_sequences(root / "sequences.jsonl", len(items))
        for name, expected, got in (("n_items", info.get("n_items"), len(items)),
                                    ("n_users", info.get("n_users"), len(user_ids))):
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
