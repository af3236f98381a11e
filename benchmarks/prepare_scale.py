"""Scale of ``simgr prepare --source events``: a synthetic Parquet log (Zipf item popularity) prepared in a
child process; prints ONE JSON line {"rows", "seconds", "rows_per_s", "peak_rss_bytes"}.

    python benchmarks/prepare_scale.py [--rows 10000000 --users 1000000 --items 200000] [--workdir DIR]

peak_rss_bytes is the child's peak resident set (``prepare`` only, not the log generation).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def write_log(path: Path, *, rows: int, users: int, items: int, seed: int = 0, chunk: int = 2_000_000) -> None:
    """Users uniform, items Zipf(1.1) over ``items`` ids, times increasing with noise; string ids."""
    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        u = rng.integers(0, users, size=n)
        i = (rng.zipf(1.1, size=n) - 1) % items
        t = 1_600_000_000 + (start + np.arange(n)) // 10 + rng.integers(0, 1000, size=n)
        table = pa.table({"user_id": pc.binary_join_element_wise("u", pc.cast(pa.array(u), pa.string()), ""),
                          "item_id": pc.binary_join_element_wise("i", pc.cast(pa.array(i), pa.string()), ""),
                          "timestamp": pa.array(t, type=pa.int64())})
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=200_000)
    p.add_argument("--workdir", type=Path)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = a.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        log_path = work / "events.parquet"
        write_log(log_path, rows=a.rows, users=a.users, items=a.items)
        env = {**os.environ, "SIMGR_NO_PROGRESS": "1"}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "service.cli.main", "--log-level", "WARNING", "prepare",
                        "--source", "events", "--interactions", str(log_path), "--out", str(work / "data")],
                       check=True, env=env, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux: KiB
    print(json.dumps({"rows": a.rows, "seconds": round(seconds, 2), "rows_per_s": round(a.rows / seconds),
                      "peak_rss_bytes": peak}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
