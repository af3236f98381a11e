"""Where a SimGR training step's time goes on this machine (not a test). Prints ONE JSON line.

    python benchmarks/step_profile.py --data D --backbone large --autocast off --threads 2

Times --steps optimiser steps of the real trainer (``train_step``), then runs --profiled more under
``torch.profiler`` and reports the --top operators by self CPU time, each as a share of the profiled
steps' total. ``aten::mm`` holds the decoder's projections and the full-softmax scores against every
item; what is left beside it is what a change outside the matrix products can win (reports/quality §2b).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def profile_steps(run: Any, state: Any, order: list[int], *, first: int, steps: int, top: int) -> dict[str, Any]:
    """Self CPU time of the ``top`` costliest operators over ``steps`` optimiser steps from step ``first``."""
    from torch.profiler import ProfilerActivity, profile

    from model.training.train import train_step

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for s in range(first, first + steps):
            train_step(run, state, order, s % run.steps_per_epoch)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops) or 1.0  # microseconds
    return {"profiled_steps": steps, "self_cpu_s": round(total / 1e6, 3),
            "top": [{"op": e.key, "share": round(e.self_cpu_time_total / total, 4), "calls": e.count}
                    for e in ops[:top]]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--data", type=Path, help="a prepared dataset with semantic IDs (default: synthetic)")
    p.add_argument("--backbone", default="small")
    p.add_argument("--autocast", choices=["off", "bf16"], default="off",
                   help="the trainer's --autocast (bf16 pays only on CPUs with AMX or AVX512-BF16)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--steps", type=int, default=10, help="timed optimiser steps, outside the profiler")
    p.add_argument("--profiled", type=int, default=6, help="optimiser steps under the profiler")
    p.add_argument("--top", type=int, default=12, help="operators reported")
    a = p.parse_args()
    from model.progress import silence

    silence()
    import torch
    from mixed_precision import with_autocast
    from prefix_sharing import alternate_rates, trainer

    from model.data.synthetic import dataset_or_synthetic
    from model.training.precision import cpu_bf16_units

    torch.set_num_threads(a.threads)
    data = dataset_or_synthetic(a.data, prefix="simgr_profile_")
    run, state, order = trainer(data, a.backbone)
    run = with_autocast(run, a.autocast)
    rate = alternate_rates(state, {a.autocast: lambda: (run, order)}, steps=a.steps, rounds=1)[a.autocast]  # warm + timed
    out = {"data": str(a.data or "synthetic"), "backbone": a.backbone, "autocast": a.autocast,
           "threads": a.threads, "cpu_isa": torch.backends.cpu.get_cpu_capability(),
           "cpu_bf16_units": list(cpu_bf16_units()), "train_samples_per_s": rate,
           **profile_steps(run, state, order, first=1 + a.steps, steps=a.profiled, top=a.top)}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
