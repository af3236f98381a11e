"""The shared instruction prefix, on and off, side by side (not a test). Prints ONE JSON line.

    python benchmarks/prefix_sharing.py [--data DIR] [--backbone small] [--steps 30]

Every SimGR prompt opens with the same instruction (19 tokens by default); model/network/shared_prefix.py
runs it once per batch in training and once per loaded model in serving. This times both paths in one
process, alternating, one thread:
  - training: optimiser steps of the real trainer on --data (default: a synthetic dataset), samples/s;
  - serving: ``Bundle.encode_users`` of a random-init 4-layer d=256 bundle, full-length histories, ms at
    batch 1 and 32 (the serve_load benchmark's model).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def trainer(data: Path, backbone: str) -> tuple[Any, Any, list[int]]:
    """The real trainer's run, its state and an epoch's batch order on ``data``, ready for ``train_step``."""
    from model.config import ModelConfig
    from model.training.order import epoch_order
    from model.training.run import RunConfig
    from model.training.train import _setup

    cfg = RunConfig(data_dir=str(data), model=ModelConfig(backbone=backbone))
    run, state = _setup(cfg, Path(tempfile.mkdtemp(prefix="simgr_bench_")), resume=False)
    run.net.train()
    return run, state, epoch_order(run.sizes, seed=0, epoch=0)


def alternate_rates(state: Any, modes: dict[str, Callable[[], tuple[Any, list[int]]]], *, steps: int,
                    rounds: int) -> dict[str, float]:
    """Training samples/s of each mode, best of ``rounds`` alternating rounds of ``steps`` optimiser steps.
    ``modes[name]()`` switches to that mode and returns the run to step with and its epoch's batch order.
    Step indices wrap at the epoch's end, so a small epoch serves any number of steps."""
    from model.training.train import train_step

    rates: dict[str, list[float]] = {name: [] for name in modes}
    step = 0
    for _ in range(rounds):
        for name, switch in modes.items():
            run, order = switch()
            train_step(run, state, order, step % run.steps_per_epoch)  # warm
            t, seen = time.perf_counter(), 0
            for s in range(step + 1, step + 1 + steps):
                seen += train_step(run, state, order, s % run.steps_per_epoch)[2]
            rates[name].append(seen / (time.perf_counter() - t))
            step += steps + 1
    return {name: round(max(r), 1) for name, r in rates.items()}


def train_rate(data: Path, backbone: str, steps: int, rounds: int) -> dict[str, float]:
    from model.network.model import SimGR

    run, state, order = trainer(data, backbone)

    def sharing(on: bool) -> Callable[[], tuple[Any, list[int]]]:
        def switch() -> tuple[Any, list[int]]:
            SimGR.share_prefix = on
            return run, order
        return switch

    try:
        return alternate_rates(state, {"off": sharing(False), "on": sharing(True)}, steps=steps, rounds=rounds)
    finally:
        SimGR.share_prefix = True


def serve_ms(rounds: int) -> dict[str, float]:
    import numpy as np

    from model.export.bundle import Bundle
    from model.export.synthetic import make_random_bundle
    from model.network.model import SimGR

    b = Bundle.load(make_random_bundle(Path(tempfile.mkdtemp(prefix="simgr_prefix_")) / "b", n_items=5000,
                                       layers=4, dim=256, seed=0))
    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    for bs, reps in ((1, 40), (32, 8)):
        hist = [rng.integers(0, b.n_items, size=b.max_history).tolist() for _ in range(bs)]
        times: dict[str, list[float]] = {"on": [], "off": []}
        for _ in range(rounds):
            for mode in ("off", "on"):
                SimGR.share_prefix = mode == "on"
                b.model.eval()  # drops the kept prefix: each round recomputes it once
                b.encode_users(hist)
                for _ in range(reps):
                    t = time.perf_counter()
                    b.encode_users(hist)
                    times[mode].append(time.perf_counter() - t)
        for mode, ts in times.items():
            out[f"encode_ms_b{bs}_{mode}"] = round(1e3 * float(np.median(ts)), 2)
    SimGR.share_prefix = True
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--data", type=Path, help="a prepared dataset with semantic IDs (default: synthetic)")
    p.add_argument("--backbone", default="small")
    p.add_argument("--steps", type=int, default=30, help="optimiser steps per timed round")
    p.add_argument("--rounds", type=int, default=2, help="alternating off/on rounds (best round kept)")
    a = p.parse_args()
    from model.progress import silence

    silence()
    import torch

    torch.set_num_threads(1)
    from model.data.synthetic import dataset_or_synthetic

    data = dataset_or_synthetic(a.data, prefix="simgr_prefix_")
    train = train_rate(data, a.backbone, a.steps, a.rounds)
    out: dict[str, Any] = {"data": str(a.data or "synthetic"), "backbone": a.backbone,
                           "train_samples_per_s_off": train["off"], "train_samples_per_s_on": train["on"],
                           "train_speedup": round(train["on"] / train["off"], 2), **serve_ms(a.rounds)}
    out["encode_speedup_b1"] = round(out["encode_ms_b1_off"] / out["encode_ms_b1_on"], 2)
    out["encode_speedup_b32"] = round(out["encode_ms_b32_off"] / out["encode_ms_b32_on"], 2)
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
