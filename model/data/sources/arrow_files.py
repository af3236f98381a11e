"""Tabular files read with pyarrow in streamed record batches: CSV, TSV, Parquet and JSON lines, each
optionally gzipped, the format chosen by the file name (``events.csv.gz``, ``part-0.parquet``).

A directory stands for all its part files (hidden and ``_``-prefixed names skipped, sorted by name).
Every failure is a SimGRError naming the file, so the CLI prints one line and exits 2.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.json as pjson
import pyarrow.parquet as pq

from model.errors import SimGRError

Format = Literal["csv", "tsv", "parquet", "jsonl"]
_SUFFIXES: dict[str, Format] = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
                                ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_BLOCK_BYTES = 32 << 20  # CSV/JSON bytes per parsed block: bounds the memory of one streamed step


def file_format(path: Path) -> Format:
    """The format named by the file's last suffix, ignoring a trailing ``.gz``."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
        if suffixes and suffixes[-1] in (".parquet", ".pq"):
            raise SimGRError(f"{path}: gzip around Parquet is not supported (Parquet compresses internally)")
    fmt = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise SimGRError(f"{path}: unknown file type (expected .csv, .tsv, .parquet, .jsonl, optionally .gz)")
    return fmt


def part_files(path: Path) -> list[Path]:
    """``path`` itself, or the readable part files of a directory."""
    if not path.exists():
        raise SimGRError(f"{path}: no such file or directory")
    if path.is_file():
        file_format(path)
        return [path]
    parts = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    if not parts:
        raise SimGRError(f"{path}: directory holds no part files")
    for p in parts:
        file_format(p)
    return parts


def _error(path: Path, exc: BaseException) -> SimGRError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SimGRError(f"{path}: cannot read ({first})")


def column_names(path: Path) -> list[str]:
    """The columns of one file (reads the Parquet footer, or the first block of a text format)."""
    fmt = file_format(path)
    try:
        if fmt == "parquet":
            return list(pq.read_schema(path).names)
        with _open_stream(path, fmt, strings=()) as reader:
            return list(reader.schema.names)
    except SimGRError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _error(path, exc) from None


def _open_stream(path: Path, fmt: Format, *, strings: Sequence[str]) -> pa.RecordBatchReader:
    if fmt in ("csv", "tsv"):
        return pcsv.open_csv(
            path, read_options=pcsv.ReadOptions(block_size=_BLOCK_BYTES),
            parse_options=pcsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",", newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in strings},
                                                strings_can_be_null=True))
    return pjson.open_json(path, read_options=pjson.ReadOptions(block_size=_BLOCK_BYTES))


def iter_batches(path: Path, columns: Sequence[str], *, batch_rows: int,
                 strings: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
    """Record batches of ``columns`` only (each present, else SimGRError). ``strings`` are read as text
    where the format allows it (CSV), so ids like ``007`` keep their zeros."""
    fmt = file_format(path)
    missing = [c for c in columns if c not in column_names(path)]
    if missing:
        raise SimGRError(f"{path}: no column {missing[0]!r} (columns: {', '.join(column_names(path))})")
    try:
        if fmt == "parquet":
            yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=list(columns))
            return
        with _open_stream(path, fmt, strings=[c for c in strings if c in columns]) as reader:
            for batch in reader:
                yield batch.select(list(columns))
    except SimGRError:
        raise
    except (pa.ArrowException, OSError, ValueError, EOFError) as exc:
        raise _error(path, exc) from None


def read_table(path: Path, *, strings: Sequence[str] = ()) -> pa.Table:
    """A whole (small) file as one table: the item table. ``strings`` as in ``iter_batches``."""
    fmt = file_format(path)
    try:
        if fmt == "parquet":
            return pq.read_table(path)
        with _open_stream(path, fmt, strings=strings) as reader:
            return reader.read_all()
    except (pa.ArrowException, OSError, ValueError, EOFError) as exc:
        raise _error(path, exc) from None
