"""bf16 autocast against fp32 in SimGR training steps, side by side (not a test). Prints ONE JSON line.

    python benchmarks/mixed_precision.py [--data DIR] [--backbone medium] [--steps 20] [--threads 1]

Times optimiser steps of the real trainer (``train_step``) with ``TrainConfig.autocast`` off and bf16,
alternating in one process, and the loss of the same batches under both, from the same weights. bf16 pays
on CPUs with AMX or AVX512-BF16 units and costs elsewhere; the line records which the CPU has.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any


def with_autocast(run: Any, mode: str) -> Any:
    """The trainer's run with ``TrainConfig.autocast`` set to ``mode``."""
    return dataclasses.replace(run, cfg=dataclasses.replace(
        run.cfg, train=dataclasses.replace(run.cfg.train, autocast=mode)))


def loss_gap(run: Any, order: list[int], batches: int) -> float:
    """Largest |bf16 loss - fp32 loss| / fp32 loss over ``batches`` micro-batches, the same weights."""
    import torch

    from model.training.precision import step_autocast

    run.net.eval()  # no dropout: both precisions see the same network
    worst = 0.0
    with torch.no_grad():
        for b in range(batches):
            chunk = order[b * run.micro:(b + 1) * run.micro]
            batch = run.method.collate([run.windows[i] for i in chunk], run.built).to(run.device)
            losses = []
            for mode in ("off", "bf16"):
                with step_autocast(mode, run.device):  # type: ignore[arg-type]
                    losses.append(float(run.net(batch)[1]))
            worst = max(worst, abs(losses[1] - losses[0]) / losses[0])
    run.net.train()
    return worst


def train_rates(data: Path, backbone: str, steps: int, rounds: int) -> dict[str, Any]:
    from prefix_sharing import alternate_rates, trainer

    run, state, order = trainer(data, backbone)
    modes = {mode: (lambda m=mode: (with_autocast(run, m), order)) for mode in ("off", "bf16")}
    return {"rates": alternate_rates(state, modes, steps=steps, rounds=rounds),
            "loss_gap": round(loss_gap(run, order, batches=8), 5)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--data", type=Path, help="a prepared dataset with semantic IDs (default: synthetic)")
    p.add_argument("--backbone", default="medium")
    p.add_argument("--steps", type=int, default=20, help="optimiser steps per timed round")
    p.add_argument("--rounds", type=int, default=2, help="alternating off/bf16 rounds (best round kept)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    from model.progress import silence

    silence()
    import torch

    torch.set_num_threads(a.threads)
    from model.data.synthetic import dataset_or_synthetic

    data = dataset_or_synthetic(a.data, prefix="simgr_bf16_")
    got = train_rates(data, a.backbone, a.steps, a.rounds)
    off, bf16 = got["rates"]["off"], got["rates"]["bf16"]
    out = {"data": str(a.data or "synthetic"), "backbone": a.backbone, "threads": a.threads,
           "cpu_amx": torch.cpu._is_amx_tile_supported(), "cpu_avx512_bf16": torch.cpu._is_avx512_bf16_supported(),
           "train_samples_per_s_fp32": off, "train_samples_per_s_bf16": bf16, "train_speedup": round(bf16 / off, 2),
           "max_rel_loss_gap": got["loss_gap"]}
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
