"""The histories ``simgr recommend-batch`` scores: each user's full sequence from a prepared dataset
directory, or from an events file read as ``prepare --source events`` reads it (no k-core: every user with
a known item is scored). Item ids are mapped to the bundle's indices; items the bundle lacks are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from model.config import DataConfig, EventsConfig
from model.data.dataset import Dataset
from model.data.sources.events import read_event_log
from model.errors import SimGRError


@dataclass(frozen=True, kw_only=True)
class Histories:
    user_ids: list[str]  # scoring order
    offsets: np.ndarray  # (U + 1,) int64 into items
    items: np.ndarray  # (n,) int64 bundle item idx, each user's oldest first; may be empty for a user

    def __len__(self) -> int:
        return len(self.user_ids)

    def of(self, u: int) -> np.ndarray:
        return self.items[self.offsets[u]:self.offsets[u + 1]]


def _ragged(user_ids: list[str], lengths: np.ndarray, items: np.ndarray) -> Histories:
    offsets = np.zeros(len(user_ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Histories(user_ids=user_ids, offsets=offsets, items=items)


def _compact(user_ids: list[str], offsets: np.ndarray, mapped: np.ndarray) -> Histories:
    """Drop the -1 (unknown to the bundle) entries of each user's mapped sequence."""
    known = mapped >= 0
    lengths = np.add.reduceat(known.astype(np.int64), offsets[:-1]) if len(mapped) else np.zeros(len(user_ids))
    lengths[np.diff(offsets) == 0] = 0  # reduceat reads one element for an empty user
    return _ragged(user_ids, lengths.astype(np.int64), mapped[known])


def from_dataset(root: Path, lookup: Mapping[str, int]) -> Histories:
    data = Dataset.load(root)
    to_bundle = np.array([lookup.get(i, -1) for i in data.item_ids], dtype=np.int64)  # dataset idx -> bundle idx
    lengths = np.array([len(s) for s in data.sequences], dtype=np.int64)
    flat = np.fromiter((i for s in data.sequences for i in s), dtype=np.int64, count=int(lengths.sum()))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _compact(list(data.user_ids), offsets, to_bundle[flat])


def from_events(path: Path, lookup: Mapping[str, int], cfg: EventsConfig) -> Histories:
    log = read_event_log(path, cfg, DataConfig(min_user_interactions=1, min_item_interactions=1), k_core=False)
    names = log.item_names.to_pylist()
    to_bundle = np.array([lookup.get(str(i), -1) for i in names], dtype=np.int64)
    kept, starts = np.unique(log.users, return_index=True)
    offsets = np.append(starts, len(log.users)).astype(np.int64)
    user_ids = [str(u) for u in log.user_names.take(pa.array(kept)).to_pylist()]
    mapped = to_bundle[log.items] if len(log.items) else np.zeros(0, dtype=np.int64)
    return _compact(user_ids, offsets, mapped)


def load_histories(source: Path, lookup: Mapping[str, int], *, cfg: EventsConfig = EventsConfig()) -> Histories:
    """A prepared dataset directory (with dataset.json) or an events file/directory."""
    if not source.exists():
        raise SimGRError(f"{source}: no such file or directory")
    if source.is_dir() and (source / "dataset.json").is_file():
        return from_dataset(source, lookup)
    return from_events(source, lookup, cfg)


def restrict(hist: Histories, users_file: Path) -> Histories:
    """Only the users listed in ``users_file`` (one id per line), in the file's order; unknown ones skipped."""
    try:
        wanted = [line.strip() for line in users_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise SimGRError(f"{users_file}: cannot read ({exc.strerror})") from None
    where = {u: n for n, u in enumerate(hist.user_ids)}
    rows = [where[u] for u in dict.fromkeys(wanted) if u in where]
    if not rows:
        raise SimGRError(f"{users_file}: none of its {len(wanted)} users has a history")
    parts = [hist.of(r) for r in rows]
    lengths = np.array([len(p) for p in parts], dtype=np.int64)
    items = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return _ragged([hist.user_ids[r] for r in rows], lengths, items)
