"""``prepare --source events``: an interaction log (one row per user-item event) streamed from CSV, TSV,
Parquet or JSON lines (optionally gzipped) into columnar numpy arrays, never one Python object per row.

Rows are dropped for exactly one reason each, checked in this order, and every drop is counted:
``missing_field`` (no user, item or time), ``event_type`` (not in ``keep_events``), ``unparsable_time``,
``item_not_in_table`` (``--items`` given and the item is not in it), ``repeat`` (the same user-item pair
again; the earliest is kept unless ``keep_repeats``), ``k_core`` (iterated user/item minimum counts,
users at least 3 for leave-one-out).

Order: users by their first row in the log (files in name order); each user's items by time, ties in row
order; item indices by first appearance when scanning users in that order (as ``model/data/prepare.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from model.config import DataConfig, EventsConfig
from model.data.sources.arrow_files import column_names, iter_batches, part_files
from model.data.sources.event_times import epoch_unit, parse_times
from model.errors import SimGRError

log = logging.getLogger(__name__)

DROP_REASONS = ("missing_field", "event_type", "unparsable_time", "item_not_in_table", "repeat", "k_core")
MIN_INTERACTIONS = 3  # leave-one-out needs a train item, a valid target and a test target
_CANDIDATES = {
    "user": ("user_id", "userId", "user", "uid", "customer_id", "visitorid"),
    "item": ("item_id", "itemId", "item", "product_id", "asin", "movieId", "itemid"),
    "time": ("timestamp", "time", "ts", "event_time", "datetime", "date", "unix_time"),
}


@dataclass(frozen=True, kw_only=True)
class Columns:
    user: str
    item: str
    time: str
    event: str | None


def resolve_columns(path: Path, cfg: EventsConfig) -> Columns:
    """The mapped column names, auto-detected where ``cfg`` leaves them empty; SimGRError when absent."""
    names = column_names(path)

    def pick(role: str, given: str) -> str:
        if given:
            if given not in names:
                raise SimGRError(f"{path}: no {role} column {given!r} (columns: {', '.join(names)})")
            return given
        for cand in _CANDIDATES[role]:
            if cand in names:
                return cand
        raise SimGRError(f"{path}: no {role} column found (tried {', '.join(_CANDIDATES[role])}; "
                         f"columns: {', '.join(names)}); name it with --{role}-col")

    if cfg.event_col and cfg.event_col not in names:
        raise SimGRError(f"{path}: no event column {cfg.event_col!r} (columns: {', '.join(names)})")
    if cfg.keep_events and not cfg.event_col:
        raise SimGRError("--keep-events needs --event-col")
    return Columns(user=pick("user", cfg.user_col), item=pick("item", cfg.item_col),
                   time=pick("time", cfg.time_col), event=cfg.event_col or None)


@dataclass(kw_only=True)
class _Scan:
    users: list[pa.Array] = field(default_factory=list)  # string chunks of kept rows
    items: list[pa.Array] = field(default_factory=list)
    times: list[np.ndarray] = field(default_factory=list)  # float64 epoch seconds
    drops: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    rows_read: int = 0
    time_formats: set[str] = field(default_factory=set)


def _ids(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(ids as strings, (n,) bool missing): null or empty."""
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        if pa.types.is_floating(arr.type):  # ids read as floats because of nulls: 12.0 -> "12"
            arr = pc.cast(pc.cast(arr, pa.int64(), safe=False), pa.string())
        arr = pc.cast(arr, pa.string())
    missing = pc.or_kleene(pc.is_null(arr), pc.equal(pc.utf8_length(arr), 0))
    return arr, np.asarray(pc.fill_null(missing, True).to_numpy(zero_copy_only=False), dtype=bool)


def _scan_file(path: Path, scan: _Scan, cfg: EventsConfig, keep_events: pa.Array | None) -> None:
    cols = resolve_columns(path, cfg)
    wanted = [cols.user, cols.item, cols.time] + ([cols.event] if cols.event else [])
    wanted = list(dict.fromkeys(wanted))
    file_times: list[np.ndarray] = []
    file_raw: list[np.ndarray] = []
    for batch in iter_batches(path, wanted, batch_rows=cfg.batch_rows, strings=wanted):
        scan.rows_read += batch.num_rows
        users, miss_u = _ids(batch.column(cols.user))
        items, miss_i = _ids(batch.column(cols.item))
        parsed = parse_times(batch.column(cols.time))
        if parsed.kind != "epoch":  # bare numbers are named by their unit once the file is read
            scan.time_formats.add(parsed.kind)
        missing = miss_u | miss_i | np.asarray(batch.column(cols.time).is_null().to_numpy(zero_copy_only=False))
        keep = ~missing
        scan.drops["missing_field"] += int(missing.sum())
        if keep_events is not None and cols.event:
            wrong = ~np.asarray(pc.fill_null(pc.is_in(pc.cast(batch.column(cols.event), pa.string()),
                                                      value_set=keep_events), False).to_numpy(zero_copy_only=False))
            scan.drops["event_type"] += int((keep & wrong).sum())
            keep &= ~wrong
        bad_time = keep & ~np.isfinite(parsed.values)
        scan.drops["unparsable_time"] += int(bad_time.sum())
        keep &= ~bad_time
        mask = pa.array(keep)
        scan.users.append(users.filter(mask))
        scan.items.append(items.filter(mask))
        file_times.append(parsed.values[keep])
        file_raw.append(parsed.raw[keep])
    if file_times:
        times, raw = np.concatenate(file_times), np.concatenate(file_raw)
        if raw.any():
            unit = epoch_unit(times[raw])
            scan.time_formats.add(f"epoch_{'milliseconds' if unit == 'ms' else 'seconds'}")
            if unit == "ms":
                times[raw] /= 1000.0
        scan.times.append(times)


def _encode(chunks: Sequence[pa.Array]) -> tuple[np.ndarray, pa.Array]:
    """String chunks -> ((n,) int32 codes in order of first appearance, the distinct values)."""
    if not chunks:
        return np.zeros(0, dtype=np.int32), pa.array([], type=pa.string())
    joined = pa.chunked_array([c.cast(pa.large_string()) for c in chunks]).combine_chunks()
    encoded = pc.dictionary_encode(joined)
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int32)
    return codes, encoded.dictionary


@dataclass(frozen=True, kw_only=True)
class EventLog:
    """The kept interactions, sorted by (user code, time, row)."""

    users: np.ndarray  # (n,) int32 code into user_names, non-decreasing
    items: np.ndarray  # (n,) int32 code into item_names
    times: np.ndarray  # (n,) float64 epoch seconds
    user_names: pa.Array  # code -> user id (first-appearance order)
    item_names: pa.Array  # code -> item id
    drops: dict[str, int]  # reason -> rows
    rows_read: int
    time_formats: list[str]


def scan_events(path: Path, cfg: EventsConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array, pa.Array, _Scan]:
    """Stream every part file of ``path``; (users, items, times, user names, item names, scan accounting)."""
    keep_events = pa.array(list(cfg.keep_events), type=pa.string()) if cfg.keep_events else None
    scan = _Scan()
    for part in part_files(path):
        _scan_file(part, scan, cfg, keep_events)
    users, user_names = _encode(scan.users)
    items, item_names = _encode(scan.items)
    scan.users, scan.items = [], []  # the codes replace the strings
    times = np.concatenate(scan.times) if scan.times else np.zeros(0)
    return users, items, times, user_names, item_names, scan


def _apply(keep: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    return [a[keep] for a in arrays]


def read_event_log(path: Path, cfg: EventsConfig, data: DataConfig, *,
                   item_table_ids: pa.Array | None = None, k_core: bool = True) -> EventLog:
    """Scan, filter and sort the log; ``item_table_ids`` restricts items to the item table."""
    users, items, times, user_names, item_names, scan = scan_events(path, cfg)
    if item_table_ids is not None:
        known = np.asarray(pc.is_in(item_names, value_set=item_table_ids.cast(pa.large_string()))
                           .to_numpy(zero_copy_only=False), dtype=bool)
        keep = known[items] if len(items) else np.zeros(0, dtype=bool)
        scan.drops["item_not_in_table"] += int((~keep).sum())
        users, items, times = _apply(keep, users, items, times)
    order = np.lexsort((times, users))  # stable: ties keep row order
    users, items, times = users[order], items[order], times[order]
    if not cfg.keep_repeats and len(users):
        pair = users.astype(np.int64) * max(1, len(item_names)) + items
        _, first = np.unique(pair, return_index=True)
        keep = np.zeros(len(pair), dtype=bool)
        keep[first] = True
        scan.drops["repeat"] += int((~keep).sum())
        users, items, times = _apply(keep, users, items, times)
    if k_core:
        users, items, times = _k_core(users, items, times, data, scan.drops)
    return EventLog(users=users, items=items, times=times, user_names=user_names, item_names=item_names,
                    drops=scan.drops, rows_read=scan.rows_read, time_formats=sorted(scan.time_formats))


def _k_core(users: np.ndarray, items: np.ndarray, times: np.ndarray, data: DataConfig,
            drops: dict[str, int]) -> list[np.ndarray]:
    """Drop users/items under the minimum counts until none is (users need >= 3 for leave-one-out)."""
    min_user = max(data.min_user_interactions, MIN_INTERACTIONS)
    min_item = max(data.min_item_interactions, 1)
    while len(users):
        u_count = np.bincount(users)
        i_count = np.bincount(items)
        keep = (u_count[users] >= min_user) & (i_count[items] >= min_item)
        if keep.all():
            break
        drops["k_core"] += int((~keep).sum())
        users, items, times = _apply(keep, users, items, times)
    return [users, items, times]
