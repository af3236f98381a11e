"""Throughput of ``simgr recommend-batch`` against the in-process limit of the same bundle: the bare
``encode_and_search`` loop over the same batches, with no history mapping, filters or Parquet writing.
Prints ONE JSON line {"users", "users_per_s", "limit_users_per_s", "ratio"} (best of ``--repeats``).

    python benchmarks/batch_scoring.py [--users 2000 --items 2000 --k 100 --batch-size 64 --preset tiny]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from model.progress import silence

silence()


def main(argv: list[str] | None = None) -> int:
    from model.export.synthetic import make_random_bundle
    from service.batch_histories import Histories
    from service.batch_scoring import BatchJob, score_to_parquet
    from service.model_state import ModelState, default_loader
    from service.scoring import encode_and_search

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = make_random_bundle(Path(tmp) / "bundle", n_items=a.items, preset=a.preset)
        model = default_loader(device="cpu", encoder="model", noop_sleep_ms=0.0)(bundle)
        state = ModelState.build(model, artifacts=bundle)
        rng = np.random.default_rng(0)
        lengths = rng.integers(1, model.max_history + 1, size=a.users)
        offsets = np.zeros(a.users + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        hist = Histories(user_ids=[f"user-{u}" for u in range(a.users)], offsets=offsets,
                         items=rng.integers(0, a.items, size=int(offsets[-1])))
        batches = [[hist.of(u).tolist() for u in range(s, min(a.users, s + a.batch_size))]
                   for s in range(0, a.users, a.batch_size)]
        encode_and_search(state.model, state.index, batches[0], k=a.k)  # warm-up
        limit = batch = 0.0
        for r in range(a.repeats):
            t0 = time.perf_counter()
            for users in batches:
                encode_and_search(state.model, state.index, users, k=a.k, exclude=[()] * len(users),
                                  allow=[None] * len(users))
            limit = max(limit, a.users / (time.perf_counter() - t0))
            job = BatchJob(k=a.k, batch_size=a.batch_size, chunk_users=10_000)
            t0 = time.perf_counter()
            score_to_parquet(state, hist, Path(tmp) / f"recs-{r}.parquet", job=job)
            batch = max(batch, a.users / (time.perf_counter() - t0))
    print(json.dumps({"users": a.users, "users_per_s": round(batch, 1), "limit_users_per_s": round(limit, 1),
                      "ratio": round(batch / limit, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
