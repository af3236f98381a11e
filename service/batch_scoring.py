"""``simgr recommend-batch``: the top-k of every user, scored offline through the server's own
``encode_and_search`` and written as Parquet rows ``user_id, rank, item_id, score``.

OUT is a directory (a Parquet dataset): users are cut into chunks of ``chunk_users``; chunk c is written to
``part-{c:05d}.parquet`` (streamed, one row group per batch, renamed into place when complete), so a rerun
skips finished chunks and a killed run leaves no partial or duplicate rows. Chunk c belongs to shard
``c % n``: ``--shard i/n`` processes (or torchrun ranks) together write exactly what one run writes.
``_run.json`` pins the settings (a resume with other settings is refused); ``_manifest.json`` is written
once every part exists (by rank 0 under torchrun).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from model.errors import SimGRError
from model.progress import progress
from service.batch_histories import Histories
from service.model_state import ModelState
from service.scoring import encode_and_search

log = logging.getLogger(__name__)

SCHEMA = pa.schema([("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()),
                    ("score", pa.float32())])


class BatchFilter(BaseModel):
    """``--filter`` JSON: item ids every user's list is restricted to (allow) or never shows (exclude)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow: list[str] | None = Field(default=None, description="only these items (None = all)")
    exclude: list[str] = Field(default_factory=list, description="never these items")

    @classmethod
    def parse(cls, text: str | None) -> BatchFilter:
        if not text:
            return cls()
        try:
            return cls.model_validate_json(text)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            raise SimGRError(f"--filter: {where}: {err['msg']}") from None


@dataclass(frozen=True, kw_only=True)
class BatchJob:
    k: int = 100  # items per user
    exclude_seen: bool = False  # drop every item of the user's history from its list
    batch_size: int = 64  # users per forward pass
    chunk_users: int = 50_000  # users per part file (the unit of resume and sharding)
    shard: int = 0  # this process's shard
    n_shards: int = 1  # shards in all


def _plan(job: BatchJob, state: ModelState, hist: Histories, flt: BatchFilter, out: Path) -> dict[str, Any]:
    plan = {"model_version": state.model_version, "users": len(hist), "k": job.k, "exclude_seen": job.exclude_seen,
            "chunk_users": job.chunk_users, "filter": flt.model_dump(),
            "chunks": (len(hist) + job.chunk_users - 1) // job.chunk_users}
    path = out / "_run.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old != plan:
            changed = sorted(key for key in plan if old.get(key) != plan[key])
            raise SimGRError(f"{out}: holds a run with other settings ({', '.join(changed)}); use another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        _atomic_text(path, json.dumps(plan, sort_keys=True))
    return plan


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


class _Ranked(NamedTuple):
    rows: range  # user positions in the Histories
    ids: np.ndarray  # (B, k) int64 item idx, -1 = none
    scores: np.ndarray  # (B, k) float32, NaN for the popularity fallback


def _score_rows(state: ModelState, hist: Histories, rows: range, job: BatchJob,
                allow: frozenset[int] | None, exclude: frozenset[int]) -> _Ranked:
    """One batch of users -> their top-k (server fallback for users with no known item)."""
    from service.candidates import popular as _popular

    max_h = state.model.max_history
    seqs = [hist.of(u) for u in rows]
    excl = [exclude | frozenset(s.tolist()) if job.exclude_seen else exclude for s in seqs]
    scored = [n for n, s in enumerate(seqs) if len(s)]
    ids = np.full((len(seqs), job.k), -1, dtype=np.int64)
    scores = np.full((len(seqs), job.k), np.nan, dtype=np.float32)
    if scored:
        res = encode_and_search(state.model, state.index, [seqs[n][-max_h:].tolist() for n in scored], k=job.k,
                                exclude=[excl[n] for n in scored], allow=[allow] * len(scored))
        ids[scored], scores[scored] = res.ids, res.scores
    for n in (n for n, s in enumerate(seqs) if not len(s)):
        pop = _popular(state, job.k, set(excl[n]), allow)
        ids[n, :len(pop)] = pop
    return _Ranked(rows, ids, scores)


def _to_batch(ranked: _Ranked, hist: Histories, item_names: np.ndarray) -> pa.RecordBatch:
    """Ranked ids -> Parquet rows ``user_id, rank, item_id, score`` (only real candidates)."""
    ids, scores = ranked.ids, ranked.scores
    keep = ids >= 0
    user_rows = np.repeat(np.arange(len(ids)), keep.sum(axis=1))
    users = np.asarray([hist.user_ids[u] for u in ranked.rows], dtype=object)
    ranks = (np.cumsum(keep, axis=1) * keep)[keep]
    return pa.record_batch([pa.array(users[user_rows], type=pa.string()), pa.array(ranks, type=pa.int32()),
                            pa.array(item_names[ids[keep]], type=pa.string()),
                            pa.array(scores[keep], type=pa.float32(), from_pandas=True)], schema=SCHEMA)


def _write_chunk(path: Path, ranked: Iterable[_Ranked], to_batch: Callable[[_Ranked], pa.RecordBatch]) -> int:
    """Stream one part file; Parquet conversion and writing run in a second thread while the next batch
    is scored (the forward pass releases the GIL), at most two batches ahead."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with pq.ParquetWriter(tmp, SCHEMA) as writer, ThreadPoolExecutor(max_workers=1) as pool:

        def write(r: _Ranked) -> int:
            batch = to_batch(r)
            writer.write_batch(batch)
            return int(batch.num_rows)

        pending: list[Future[int]] = []
        for r in ranked:
            pending.append(pool.submit(write, r))
            if len(pending) > 2:
                pending[-3].result()  # bound the memory held by queued batches
        rows = sum(f.result() for f in pending)
    os.replace(tmp, path)
    return rows


def score_to_parquet(state: ModelState, hist: Histories, out: Path, *, job: BatchJob,
                     flt: BatchFilter = BatchFilter()) -> dict[str, Any]:
    """Write this shard's missing chunks; returns counts (and writes the manifest when all are done)."""
    lookup = state.model.item_lookup
    allow = None if flt.allow is None else frozenset(lookup[i] for i in flt.allow if i in lookup)
    exclude = frozenset(lookup[i] for i in flt.exclude if i in lookup)
    plan = _plan(job, state, hist, flt, out)
    mine = [c for c in range(plan["chunks"]) if c % job.n_shards == job.shard]
    todo = [c for c in mine if not (out / f"part-{c:05d}.parquet").is_file()]
    users_todo = sum(min(len(hist), (c + 1) * job.chunk_users) - c * job.chunk_users for c in todo)
    bar = progress(range(users_todo), desc="recommend-batch", unit="user", total=users_todo)
    t0, rows = time.perf_counter(), 0
    item_names = np.asarray(list(state.model.item_ids), dtype=object)  # (N,) idx -> id
    for c in todo:
        lo, hi = c * job.chunk_users, min(len(hist), (c + 1) * job.chunk_users)

        def batches(lo: int = lo, hi: int = hi) -> Any:
            for start in range(lo, hi, job.batch_size):
                span = range(start, min(hi, start + job.batch_size))
                yield _score_rows(state, hist, span, job, allow, exclude)  # (B, k)
                if hasattr(bar, "update"):
                    bar.update(len(span))

        rows += _write_chunk(out / f"part-{c:05d}.parquet", batches(),
                             lambda r: _to_batch(r, hist, item_names))
    if hasattr(bar, "close"):
        bar.close()
    seconds = time.perf_counter() - t0
    return {"out": str(out), "shard": f"{job.shard}/{job.n_shards}", "chunks_written": len(todo),
            "chunks_skipped": len(mine) - len(todo), "users_scored": users_todo, "rows": rows,
            "seconds": round(seconds, 3), "users_per_s": round(users_todo / seconds, 1) if seconds else None,
            "model_version": state.model_version, **asdict(job)}


def write_manifest(out: Path) -> dict[str, Any] | None:
    """``_manifest.json`` once every chunk of ``_run.json`` exists; None while some are missing."""
    plan = json.loads((out / "_run.json").read_text())
    parts = [out / f"part-{c:05d}.parquet" for c in range(plan["chunks"])]
    if not all(p.is_file() for p in parts):
        return None
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    manifest = {**plan, "parts": [p.name for p in parts], "rows": rows,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _atomic_text(out / "_manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
    return manifest
