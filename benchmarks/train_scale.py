"""Training cost against catalogue size (not a test). Prints ONE JSON line.

    python benchmarks/train_scale.py [--sizes 10000,100000,1000000] [--backbone small] [--steps 4]

For each catalogue size N and each loss (full softmax, the paper's method; sampled softmax with logQ
correction), one process builds a random-init SimGR over N random semantic IDs (3 levels of 256 codes
plus a uniqueness level) and times optimiser steps on a batch of 16 full-length windows (20 items):
step time (median) and the process's peak RSS. It also times full softmax with gradient accumulation
(4 micro-batches of 4) with the item table computed once per optimiser step against once per
micro-batch. One thread per process.
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

ROOT = Path(__file__).resolve().parents[1]


def worker(n: int, loss: str, backbone: str, steps: int, share: str) -> dict[str, Any]:
    import dataclasses

    import numpy as np
    import torch

    from model.config import ModelConfig, PromptConfig
    from model.data.synthetic import random_sids
    from model.network.assembly import build_model
    from model.network.prompt import collate
    from model.network.windows import make_windows

    torch.set_num_threads(1)
    cfg = dataclasses.replace(ModelConfig(backbone=backbone), loss=loss)  # type: ignore[arg-type]
    built = build_model(cfg, PromptConfig(), random_sids(n, codebook=256, seed=0), seed=0)
    model = built.model.train()
    if loss == "sampled":
        model.item_log_prior.fill_(-float(np.log(n)))
    rng = np.random.default_rng(0)
    windows = [make_windows(rng.integers(0, n, 21).tolist(), built.vocab, stride=10)[0] for _ in range(16)]
    micro = [windows] if share == "none" else [windows[i : i + 4] for i in range(0, 16, 4)]
    batches = [collate([w.prompt for w in ws], pad_id=built.vocab.pad_id, targets=[w.targets for w in ws])
               for ws in micro]
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        optim.zero_grad(set_to_none=True)
        table = model.item_embeddings() if share == "step" else None
        leaf = table.detach().requires_grad_() if table is not None else None
        for b in batches:
            _, out = model(b) if leaf is None else model(b, item_table=leaf)
            (out / len(batches)).backward()
        if table is not None and leaf is not None:
            table.backward(leaf.grad)
        optim.step()
        times.append(time.perf_counter() - t0)
    return {"n_items": n, "loss": loss, "table": share, "step_s": round(float(np.median(times[1:])), 4),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "dim": int(model.item_embeddings().shape[1])}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--backbone", default="small")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--accum-size", type=int, default=100000, help="N of the once-per-step comparison")
    p.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        n, loss, share = int(a.worker[0]), a.worker[1], a.worker[2]
        sys.stdout.write(json.dumps(worker(n, loss, a.backbone, a.steps, share)) + "\n")
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT),
           "SIMGR_NO_PROGRESS": "1"}
    jobs = [(int(n), loss, "none") for n in a.sizes.split(",") for loss in ("full", "sampled")]
    jobs += [(a.accum_size, "full", "micro"), (a.accum_size, "full", "step")]
    rows = []
    for n, loss, share in jobs:
        out = subprocess.run([sys.executable, __file__, "--worker", str(n), loss, share, "--backbone", a.backbone,
                              "--steps", str(a.steps)], env=env, capture_output=True, text=True, check=False)
        if out.returncode:
            rows.append({"n_items": n, "loss": loss, "table": share, "error": out.stderr.strip().splitlines()[-1]})
        else:
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    sys.stdout.write(json.dumps({"results": rows}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
