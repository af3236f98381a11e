"""glibc's malloc against a preloaded tcmalloc and jemalloc in SimGR training steps (not a test). Prints ONE
JSON line.

    python benchmarks/allocator.py [--data DIR] [--backbone large] [--steps 60] [--rounds 2] [--threads 2]

The allocator is fixed when a process starts, so each measurement is a child process (this script with
``--child``) started with the allocator's ``LD_PRELOAD``; the allocators alternate, round after round, and
each keeps its best round. A child times ``--steps`` optimiser steps of the real trainer (bf16, as the
quality recipe trains) and counts the page faults and kernel time they cost (model/training/allocator.py).
An allocator whose library is not installed is left out of the line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def child(data: Path, backbone: str, steps: int) -> dict[str, Any]:
    """Samples/s of ``steps`` bf16 training steps after a warm-up, with their page faults and kernel time."""
    from mixed_precision import with_autocast
    from prefix_sharing import trainer

    from model.training.allocator import malloc_in_use
    from model.training.train import train_step

    run, state, order = trainer(data, backbone)
    run = with_autocast(run, "bf16")
    warm = 3
    for s in range(warm):
        train_step(run, state, order, s % run.steps_per_epoch)
    r0, t0, seen = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), 0
    for s in range(warm, warm + steps):
        seen += train_step(run, state, order, s % run.steps_per_epoch)[2]
    seconds, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    user, kernel = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
    return {"malloc": malloc_in_use(), "samples_per_s": round(seen / seconds, 1),
            "page_faults_per_step": round((r1.ru_minflt - r0.ru_minflt) / steps),
            "kernel_time_frac": round(kernel / (user + kernel), 3),
            "max_rss_gib": round(r1.ru_maxrss / 2**20, 2)}  # ru_maxrss is in KiB on Linux


def measure(a: argparse.Namespace, data: Path) -> dict[str, dict[str, Any]]:
    """Best round of each allocator, the allocators alternating within every round."""
    from model.training.allocator import installed

    envs = installed()
    best: dict[str, dict[str, Any]] = {}
    cmd = [sys.executable, __file__, "--child", "--data", str(data), "--backbone", a.backbone,
           "--steps", str(a.steps), "--threads", str(a.threads)]
    for _ in range(a.rounds):
        for name, env in envs.items():
            out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            if got["malloc"] != name:  # a preload that did not take would mislabel the line
                raise RuntimeError(f"{name}: the child ran on {got['malloc']}")
            if name not in best or got["samples_per_s"] > best[name]["samples_per_s"]:
                best[name] = got
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--data", type=Path, help="a prepared dataset with semantic IDs (default: synthetic)")
    p.add_argument("--backbone", default="large")
    p.add_argument("--steps", type=int, default=60, help="optimiser steps per timed child")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds (best round kept)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    from model.progress import silence

    silence()
    import torch

    torch.set_num_threads(a.threads)
    if a.child:
        sys.stdout.write(json.dumps(child(a.data, a.backbone, a.steps)) + "\n")
        return 0
    from model.data.synthetic import dataset_or_synthetic

    data = dataset_or_synthetic(a.data, prefix="simgr_malloc_")
    best = measure(a, data)
    base = best["system"]["samples_per_s"]
    out: dict[str, Any] = {"data": str(a.data or "synthetic"), "backbone": a.backbone, "threads": a.threads,
                           "steps": a.steps, "rounds": a.rounds, **best}
    out |= {f"speedup_{name}": round(got["samples_per_s"] / base, 2) for name, got in best.items() if name != "system"}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
