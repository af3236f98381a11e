"""Decoding-cost benchmark (not a test): SimGR's one forward + exact top-K vs autoregressive constrained
beam search at B=20 and B=100, same backbone preset, same test users. Prints ONE JSON line.

    python benchmarks/decode_cost.py --simgr-run RUN --ar-run RUN [--users 500] [--threads 1]
    python benchmarks/decode_cost.py --synthetic     # random-init tiny models on a synthetic dataset

Defaults to the Instruments runs cached by `simgr compare --config reports/paper/config.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

CACHE = Path("runs/compare/paper/runs")  # CompareConfig's default work_dir / the report's name / runs


def _synthetic_runs(root: Path) -> tuple[Path, Path]:
    from model.config import ModelConfig, TrainConfig
    from model.data.synthetic import make_synthetic_dataset
    from model.training.run import RunConfig
    from model.training.train import train

    data = make_synthetic_dataset(root / "data", n_users=256, n_items=200)
    runs = []
    for method in ("simgr", "autoregressive"):
        cfg = RunConfig(data_dir=str(data), method=method, model=ModelConfig(backbone="tiny"),
                        train=TrainConfig(epochs=1, batch_size=32, micro_batch_size=32))
        train(cfg, root / method, resume=False)
        runs.append(root / method)
    return runs[0], runs[1]


def _time(fn: Any) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--simgr-run", type=Path, default=CACHE / "Instruments-simgr-small-mean")
    p.add_argument("--ar-run", type=Path, default=CACHE / "Instruments-autoregressive-small-mean")
    p.add_argument("--synthetic", action="store_true", help="train throwaway tiny models instead")
    p.add_argument("--users", type=int, default=500, help="fixed random sample of test users")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("SIMGR_NO_PROGRESS", "1")
    torch.set_num_threads(a.threads)

    from model.baselines.autoregressive import rank_beam
    from model.evaluation.metrics import ranking_metrics
    from model.network.ranking import rank_users
    from model.training.run import load_run

    with tempfile.TemporaryDirectory() as tmp:
        simgr_dir, ar_dir = _synthetic_runs(Path(tmp)) if a.synthetic else (a.simgr_run, a.ar_run)
        simgr, ar = load_run(simgr_dir), load_run(ar_dir)
    if ar.cfg.model.backbone != simgr.cfg.model.backbone or ar.cfg.data_dir != simgr.cfg.data_dir:
        raise SystemExit("the two runs must share the backbone preset and the dataset")
    hist, targets = simgr.data.eval_examples("test", max_history=simgr.cfg.prompt.max_history)
    idx = np.sort(np.random.default_rng(a.seed).choice(len(hist), min(a.users, len(hist)), replace=False))
    hist, tgt = [hist[i] for i in idx], np.asarray(targets)[idx]
    n_items = simgr.data.n_items
    simgr.built.model.eval()
    rank_users(simgr.built.model, simgr.built.vocab, hist[:8], k=10)  # warm-up
    top_s, t_s = _time(lambda: rank_users(simgr.built.model, simgr.built.vocab, hist, k=10, batch_size=256))
    res: dict[str, Any] = {"users": len(hist), "n_items": n_items, "backbone": simgr.cfg.model.backbone,
                           "threads": a.threads, "seconds_simgr": round(t_s, 3),
                           "items_per_s_simgr": round(len(hist) * 10 / t_s, 1),
                           "ndcg10_simgr": ranking_metrics(top_s, tgt, n_items=n_items)["ndcg@10"]}
    for beam in (20, 100):
        top_b, t_b = _time(lambda b=beam: rank_beam(ar.built, hist, k=10, beam=b))  # type: ignore[misc]
        res[f"seconds_beam{beam}"] = round(t_b, 3)
        res[f"items_per_s_beam{beam}"] = round(len(hist) * 10 / t_b, 1)
        res[f"ndcg10_beam{beam}"] = ranking_metrics(top_b, tgt, n_items=n_items)["ndcg@10"]
        res[f"speedup_vs_beam{beam}"] = round(t_b / t_s, 2)
    sys.stdout.write(json.dumps(res, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
