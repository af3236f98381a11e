"""``simgr prepare --source events``: an interaction log plus an optional item table -> DATA_DIR.

The log is read columnar (model/data/sources/events.py); the dataset directory is written by the same
``write_dataset`` as every other source, and ``dataset.json`` gains the accounting: rows read, rows dropped
per reason, the time formats detected and the first and last kept timestamp.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from model.config import DataConfig, EventsConfig
from model.data.prepare import Indexed, dataset_info, write_dataset
from model.data.ragged import RaggedSequences
from model.data.sources.arrow_files import part_files
from model.data.sources.event_items import read_item_table
from model.data.sources.events import EventLog, read_event_log, resolve_columns
from model.data.sources.records import ItemMeta
from model.errors import SimGRError

logger = logging.getLogger(__name__)


def index_events(events: EventLog) -> Indexed:
    """Dense user and item indices (users in code order, items by first appearance), as RaggedSequences."""
    kept_users, starts = np.unique(events.users, return_index=True)  # users are sorted: runs of one code
    offsets = np.append(starts, len(events.users)).astype(np.int64)
    uniq_items, first = np.unique(events.items, return_index=True)
    item_codes = uniq_items[np.argsort(first, kind="stable")]  # (N,) old code by new index
    remap = np.zeros(max(1, len(events.item_names)), dtype=np.int32)
    remap[item_codes] = np.arange(len(item_codes), dtype=np.int32)
    values = remap[events.items] if len(events.items) else np.zeros(0, dtype=np.int32)
    user_ids = [str(u) for u in events.user_names.take(kept_users).to_pylist()]
    item_ids = [str(i) for i in events.item_names.take(item_codes).to_pylist()]
    return Indexed(user_ids=user_ids, item_ids=item_ids,
                   sequences=RaggedSequences(offsets=offsets, values=values))  # type: ignore[arg-type]


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def accounting(events: EventLog) -> dict[str, Any]:
    """The dataset.json keys that say what was read and why rows were dropped."""
    return {
        "rows_read": events.rows_read,
        "rows_dropped": dict(events.drops),
        "rows_kept": len(events.users),
        "time_formats": events.time_formats,
        "first_timestamp": _iso(float(events.times.min())) if len(events.times) else None,
        "last_timestamp": _iso(float(events.times.max())) if len(events.times) else None,
    }


def prepare_events(*, interactions: Path, items: Path | None, out_dir: Path, cfg: EventsConfig = EventsConfig(),
                   data: DataConfig = DataConfig()) -> dict[str, Any]:
    """Read the log (and item table), write DATA_DIR ``out_dir``; returns the dataset.json summary."""
    start = time.perf_counter()
    if data.max_history < 1:
        raise SimGRError(f"max_history must be >= 1, got {data.max_history}")
    first = part_files(Path(interactions))[0]
    table_ids = None
    metas: dict[str, ItemMeta] = {}
    if items is not None:
        item_col = resolve_columns(first, cfg).item
        table_ids, metas = read_item_table(Path(items), cfg, item_col=item_col, max_chars=data.max_text_chars)
    events = read_event_log(Path(interactions), cfg, data, item_table_ids=table_ids)
    counts = accounting(events)
    if not len(events.users):
        raise SimGRError(f"{interactions}: no usable rows ({counts['rows_read']} read, dropped "
                         + ", ".join(f"{k} {v}" for k, v in counts["rows_dropped"].items() if v) + ")")
    indexed = index_events(events)
    kept = {i: metas[i] for i in indexed.item_ids if i in metas}
    info = dataset_info(name=Path(interactions).name.split(".")[0], source="events", indexed=indexed, metas=kept,
                        has_given_sids=False, max_history=data.max_history).model_copy(update=counts)
    write_dataset(out_dir=Path(out_dir), info=info, indexed=indexed, metas=kept, given=None,
                  max_history=data.max_history)
    dropped = ", ".join(f"{k} {v}" for k, v in counts["rows_dropped"].items())
    logger.info("read %d rows; dropped %s; kept %d interactions (%s .. %s, times %s) in %.1f s -> %s",
                counts["rows_read"], dropped, info.n_interactions, counts["first_timestamp"],
                counts["last_timestamp"], "/".join(counts["time_formats"]), time.perf_counter() - start, out_dir)
    return info.model_dump(exclude_none=True)
