"""Timestamps of an interaction log: epoch seconds or milliseconds (the unit detected per file), ISO-8601
strings, or native Parquet timestamps and dates, all turned into float epoch seconds (UTC).

Vectorised with pyarrow; only a batch holding values that no vectorised parse accepts falls back to
parsing each value in Python, and values that still fail become NaN (counted as unparsable).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MS_THRESHOLD = 1e11  # an epoch above this is milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973


class ParsedTimes(NamedTuple):
    values: np.ndarray  # (n,) float64: epoch seconds, or raw epoch numbers where ``raw`` is set; NaN = none
    raw: np.ndarray  # (n,) bool: a bare number whose unit (s or ms) is decided per file
    kind: str  # "epoch", "iso8601", "timestamp" or "mixed"


def _floats(arr: pa.Array) -> np.ndarray:
    return np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def _from_timestamps(arr: pa.Array) -> np.ndarray:
    ms = pc.cast(pc.cast(arr, pa.timestamp("ms", tz=getattr(arr.type, "tz", None))), pa.int64())
    return _floats(ms) / 1000.0


def _one(value: Any) -> tuple[float, bool]:
    """One value -> (seconds or raw number, is raw); NaN when it is neither a number nor ISO-8601."""
    if value is None:
        return float("nan"), False
    text = str(value).strip()
    try:
        return float(text), True
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        return float("nan"), False
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)  # a naive time is read as UTC
    return stamp.timestamp(), False


def parse_times(arr: pa.Array) -> ParsedTimes:
    """Parse one batch's time column (nulls become NaN)."""
    n = len(arr)
    if pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
        return ParsedTimes(_from_timestamps(arr), np.zeros(n, dtype=bool), "timestamp")
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        return ParsedTimes(_floats(arr), np.ones(n, dtype=bool), "epoch")
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    try:
        return ParsedTimes(_floats(arr), np.ones(n, dtype=bool), "epoch")
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    for tz in (None, "UTC"):
        try:
            stamps = pc.cast(arr, pa.timestamp("ms", tz=tz))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return ParsedTimes(_from_timestamps(stamps), np.zeros(n, dtype=bool), "iso8601")
    pairs = [_one(v) for v in arr.to_pylist()]
    values = np.fromiter((p[0] for p in pairs), dtype=np.float64, count=n)
    raw = np.fromiter((p[1] for p in pairs), dtype=bool, count=n)
    return ParsedTimes(values, raw, "mixed")


def epoch_unit(raw_values: np.ndarray) -> str:
    """"ms" or "s" for one file's bare epoch numbers (by their median magnitude)."""
    finite = raw_values[np.isfinite(raw_values)]
    if not len(finite):
        return "s"
    return "ms" if float(np.median(np.abs(finite))) >= MS_THRESHOLD else "s"
