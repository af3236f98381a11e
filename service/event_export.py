"""``simgr events export``: the interaction log (Redis Stream or journal file) -> Parquet in the ``events``
source format, one row per item: ``user_id, item_id, timestamp`` (float epoch seconds, UTC).

The file is written beside its final name and renamed into place, so a reader never sees half of it.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from model.errors import SimGRError
from service.durable_log import DurableLog, FileJournal, LogUnavailable, open_log

SCHEMA = pa.schema([("user_id", pa.string()), ("item_id", pa.string()), ("timestamp", pa.float64())])
PAGE = 10_000  # log entries per read


def parse_since(text: str | None) -> float | None:
    """``--since``: epoch seconds, or an ISO-8601 time (naive = UTC)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise SimGRError(f"--since {text!r}: not epoch seconds or an ISO-8601 time") from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def _rows(records: list[dict[str, Any]], since: float | None) -> dict[str, list[Any]]:
    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    for rec in records:
        ts = float(rec.get("ts", 0.0))
        if since is not None and ts < since:
            continue
        for item in rec.get("item_ids", []):
            users.append(str(rec["user_id"]))
            items.append(str(item))
            times.append(ts)
    return {"user_id": users, "item_id": items, "timestamp": times}


async def _export(log: DurableLog, out: Path, since: float | None) -> dict[str, Any]:
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        rows, first, last, entries = await _copy(log, tmp, since)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return {"out": str(out), "log": log.kind, "entries": entries, "rows": rows, "since": since,
            "first_timestamp": first, "last_timestamp": last}


async def _copy(log: DurableLog, tmp: Path, since: float | None) -> tuple[int, float | None, float | None, int]:
    entries = rows = 0
    first: float | None = None
    last: float | None = None
    after = "0"
    with pq.ParquetWriter(tmp, SCHEMA) as writer:
        while True:
            page = await log.read(after, count=PAGE)
            if not page:
                break
            after = page[-1].id
            entries += len(page)
            cols = _rows([e.record for e in page], since)
            if cols["timestamp"]:
                first = cols["timestamp"][0] if first is None else first
                last = cols["timestamp"][-1]
                writer.write_table(pa.table(cols, schema=SCHEMA))
                rows += len(cols["timestamp"])
    return rows, first, last, entries


def export_events(*, out: Path, redis_url: str | None = None, journal: Path | None = None,
                  prefix: str = "simgr:", since: str | None = None) -> dict[str, Any]:
    """Write the log named by ``redis_url`` (stream ``{prefix}log:events``) or ``journal`` to ``out``."""
    if (redis_url is None) == (journal is None):
        raise SimGRError("give exactly one of --redis URL or --journal FILE")
    if journal is not None and not journal.is_file():
        raise SimGRError(f"{journal}: no such journal file")
    if out.suffix != ".parquet":
        raise SimGRError(f"{out}: the output must be a .parquet file")
    since_s = parse_since(since)
    out.parent.mkdir(parents=True, exist_ok=True)
    log: DurableLog = (FileJournal(path=journal) if journal is not None
                       else open_log(name="events", redis_url=redis_url, state_dir=None, redis_prefix=prefix))

    async def run() -> dict[str, Any]:
        try:
            return await _export(log, out, since_s)
        except LogUnavailable as exc:
            raise SimGRError(str(exc)) from None
        finally:
            await log.close()

    return asyncio.run(run())
