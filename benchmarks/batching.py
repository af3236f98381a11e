"""Batching by size, on and off, side by side (not a test). Prints ONE JSON line.

    python benchmarks/batching.py --data data/scientific [--methods simgr,sasrec,autoregressive]

Training windows hold 1 to 20 items and random batches are padded to their longest, so most positions are
padding. ``TrainConfig.size_pool`` sorts pools of micro-batches by example size (model/training/train.py);
ranking batches users of similar history length (model/network/prompt.py::by_length). This times, in
one process, alternating, one thread:
  - training: optimiser steps of the real trainer, ``size_pool`` 1 (a plain shuffle) against the default,
    samples/s per method;
  - ranking: the method's full ranking (beam search for autoregressive) of the first --users validation
    users, handed over 256 at a time in their own order (what batching did before) against all at once,
    which ``by_length`` regroups: users/s. ``padding_*`` is the share of padded positions either way.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def train_rates(data: Path, method: str, steps: int, rounds: int) -> dict[str, float]:
    from prefix_sharing import alternate_rates

    from model.config import ModelConfig, TrainConfig
    from model.training.order import epoch_order
    from model.training.run import RunConfig
    from model.training.train import _setup

    cfg = RunConfig(data_dir=str(data), method=method, model=ModelConfig(backbone="small"), train=TrainConfig())
    run, state = _setup(cfg, Path(tempfile.mkdtemp(prefix="simgr_batching_")), resume=False)
    run.net.train()
    pools = {"off": 1, "on": cfg.train.size_pool}
    orders = {m: epoch_order(run.sizes, seed=0, epoch=0, micro=run.micro, pool=p) for m, p in pools.items()}
    modes = {mode: (lambda o=order: (run, o)) for mode, order in orders.items()}
    rates = alternate_rates(state, modes, steps=steps, rounds=rounds)
    out: dict[str, float] = {f"train_samples_per_s_{m}": r for m, r in rates.items()}
    out["train_speedup"] = round(rates["on"] / rates["off"], 2)
    for mode, order in orders.items():
        micro = [run.sizes[order[i:i + run.micro]] for i in range(0, len(order) - run.micro + 1, run.micro)]
        out[f"padding_train_{mode}"] = round(1 - sum(b.sum() for b in micro) / sum(b.max() * len(b) for b in micro), 3)
    return out


def rank_rates(data: Path, method: str, users: int, rounds: int) -> dict[str, float]:
    import numpy as np

    from model.config import ModelConfig
    from model.training.run import RunConfig, build_from_config

    loaded = build_from_config(RunConfig(data_dir=str(data), method=method, model=ModelConfig(backbone="small")))
    loaded.built.model.eval()
    hist, _ = loaded.data.eval_examples("valid", max_history=20)
    hist = hist[:users]
    times: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(rounds):
        for mode in ("off", "on"):
            # "off": batches of 256 users as they come (by_length handed one batch at a time cannot regroup)
            t = time.perf_counter()
            if mode == "on":
                loaded.method.rank(loaded.built, hist, k=10, batch_size=256, device="cpu")
            else:
                for s in range(0, len(hist), 256):
                    loaded.method.rank(loaded.built, hist[s:s + 256], k=10, batch_size=256, device="cpu")
            times[mode].append(time.perf_counter() - t)
    lengths = np.array([min(len(h), 20) for h in hist])
    by_batch = [lengths[s:s + 256] for s in range(0, len(lengths), 256)]
    srt = np.sort(lengths)
    by_len = [srt[s:s + 256] for s in range(0, len(srt), 256)]
    out = {f"rank_users_per_s_{m}": round(len(hist) / min(v), 1) for m, v in times.items()}
    out["rank_speedup"] = round(min(times["off"]) / min(times["on"]), 2)
    out["padding_rank_off"] = round(1 - lengths.sum() / sum(b.max() * len(b) for b in by_batch), 3)
    out["padding_rank_on"] = round(1 - lengths.sum() / sum(b.max() * len(b) for b in by_len), 3)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--data", type=Path, help="a prepared dataset with semantic IDs (default: synthetic)")
    p.add_argument("--methods", default="simgr,sasrec", help="comma-separated: simgr, sasrec, parallel, autoregressive")
    p.add_argument("--steps", type=int, default=30, help="optimiser steps per timed round")
    p.add_argument("--users", type=int, default=2048, help="validation users ranked per timed round")
    p.add_argument("--rounds", type=int, default=2, help="alternating off/on rounds (best round kept)")
    a = p.parse_args()
    from model.progress import silence

    silence()
    import torch

    torch.set_num_threads(1)
    from model.data.synthetic import dataset_or_synthetic

    data = dataset_or_synthetic(a.data, prefix="simgr_batching_")
    out: dict[str, Any] = {"data": str(a.data or "synthetic")}
    for method in a.methods.split(","):
        out[method] = {**train_rates(data, method, a.steps, a.rounds), **rank_rates(data, method, a.users, a.rounds)}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
