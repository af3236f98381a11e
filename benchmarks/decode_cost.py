"""Decoding-cost benchmark (not a test): SimGR's one forward + exact top-K vs autoregressive constrained
beam search (KV-cache beam) at B=20 and B=100, same backbone preset, same test users. Prints ONE JSON line.

Works on a fresh clone: it prepares the dataset, trains the two models it needs and keeps them in a
project-local cache (default .cache/decode_cost, ignored by git), so a second call only measures.

    python benchmarks/decode_cost.py                                  # Instruments, small preset, converged
    python benchmarks/decode_cost.py --budget-min 30                  # each model trained for 30 minutes
    python benchmarks/decode_cost.py --preset tiny --epochs 1 --max-users 300 --users 200   # a quick check
    python benchmarks/decode_cost.py --synthetic                      # random-walk data, tiny models
    python benchmarks/decode_cost.py --simgr-run RUN --ar-run RUN     # two existing run directories

Users: every test user by default (``--users N``: a fixed random sample). ``--refeed`` also times the
reference beam that re-feeds the token prefix at every step (seconds_beam20_refeed, with the number of
users whose top-10 lists differ from the cached beam's and its NDCG@10).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
# the shared Instruments data beside a checkout (../shared/data, as the Makefile) or beside a worktree folder
LCREC = next((p for p in (ROOT.parent / "shared" / "data" / "instruments",
                          ROOT.parent.parent / "shared" / "data" / "instruments") if p.is_dir()),
             ROOT.parent / "shared" / "data" / "instruments")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--lcrec", type=Path, default=LCREC, help="LC-Rec folder with X.inter.json (+ X.index.json)")
    p.add_argument("--synthetic", action="store_true", help="a synthetic random-walk dataset instead")
    p.add_argument("--simgr-run", type=Path, help="existing SimGR run directory (with --ar-run)")
    p.add_argument("--ar-run", type=Path, help="existing autoregressive run directory (with --simgr-run)")
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "decode_cost", help="prepared data + runs")
    p.add_argument("--preset", default="small")
    p.add_argument("--epochs", type=int, default=100, help="epoch cap (early stopping on validation ends sooner)")
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--budget-min", type=float, default=0.0, help="training budget per model (0 = converge)")
    p.add_argument("--max-users", type=int, default=0, help="train/validate on the first N users (0 = all)")
    p.add_argument("--users", type=int, default=0, help="test users: fixed random sample (0 = all)")
    p.add_argument("--refeed", action="store_true", help="also time the re-feeding reference beam at B=20")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def _dataset(a: argparse.Namespace) -> Path:
    """The prepared dataset in the cache (prepared once)."""
    from model.data.prepare import prepare_dataset
    from model.data.synthetic import make_synthetic_dataset
    from model.semantic_ids.assign import build_semantic_ids

    if a.synthetic:
        out = a.cache / "data-synthetic"
        if not (out / "semantic_ids.json").is_file():
            make_synthetic_dataset(out, n_users=256, n_items=200)
        return Path(out)
    out = a.cache / f"data-{a.lcrec.name}"
    if not (out / "semantic_ids.json").is_file():
        prepare_dataset(source="lcrec", input_path=a.lcrec, out_dir=out)
        given = sorted(a.lcrec.glob("*.index.json"))
        build_semantic_ids(data_dir=out, given=given[0] if given else None)
    return out


def _trained(a: argparse.Namespace, data: Path, method: str) -> Path:
    """A run directory for ``method`` in the cache, trained unless it finished before."""
    from model.config import ModelConfig, TrainConfig
    from model.training.run import RunConfig
    from model.training.train import train

    tag = f"b{a.budget_min:g}" if a.budget_min else f"e{a.epochs}-p{a.patience}"
    run = a.cache / "runs" / f"{data.name}-{method}-{a.preset}-{tag}-u{a.max_users}"
    if not (run / "summary.json").is_file():
        cfg = RunConfig(data_dir=str(data), method=method, model=ModelConfig(backbone=a.preset),
                        train=TrainConfig(epochs=a.epochs, patience=a.patience, time_budget_min=a.budget_min,
                                          max_users=a.max_users))
        summary = train(cfg, run, resume=True)
        (run / "summary.json").write_text(json.dumps(summary) + "\n")
    return Path(run)


def _time(fn: Any) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> int:
    a = _args()
    logging.basicConfig(level=logging.WARNING)
    from model.progress import silence

    silence()
    torch.set_num_threads(a.threads)

    from model.baselines.autoregressive import rank_beam
    from model.evaluation.metrics import ranking_metrics
    from model.network.ranking import rank_users
    from model.training.run import load_run

    if a.simgr_run or a.ar_run:
        if not (a.simgr_run and a.ar_run):
            raise SystemExit("decode_cost: error: --simgr-run and --ar-run go together")
        simgr_dir, ar_dir = a.simgr_run, a.ar_run
    else:
        data = _dataset(a)
        simgr_dir, ar_dir = _trained(a, data, "simgr"), _trained(a, data, "autoregressive")
    simgr, ar = load_run(simgr_dir), load_run(ar_dir)
    if ar.cfg.model.backbone != simgr.cfg.model.backbone or ar.cfg.data_dir != simgr.cfg.data_dir:
        raise SystemExit("decode_cost: error: the two runs must share the backbone preset and the dataset")
    hist, targets = simgr.data.eval_examples("test", max_history=simgr.cfg.prompt.max_history)
    idx = np.arange(len(hist))
    if a.users and a.users < len(hist):
        idx = np.sort(np.random.default_rng(a.seed).choice(len(hist), a.users, replace=False))
    hist, tgt = [hist[i] for i in idx], np.asarray(targets)[idx]
    n_items = simgr.data.n_items
    simgr.built.model.eval()
    rank_users(simgr.built.model, simgr.built.vocab, hist[:8], k=10)  # warm-up
    top_s, t_s = _time(lambda: rank_users(simgr.built.model, simgr.built.vocab, hist, k=10, batch_size=256))
    res: dict[str, Any] = {"users": len(hist), "n_items": n_items, "backbone": simgr.cfg.model.backbone,
                           "threads": a.threads, "seconds_simgr": round(t_s, 3), "beam": "kv-cache",
                           "items_per_s_simgr": round(len(hist) * 10 / t_s, 1),
                           "ndcg10_simgr": ranking_metrics(top_s, tgt, n_items=n_items)["ndcg@10"],
                           "simgr_run": str(simgr_dir), "ar_run": str(ar_dir)}
    tops = {}
    for beam in (20, 100):
        top_b, t_b = _time(lambda b=beam: rank_beam(ar.built, hist, k=10, beam=b))  # type: ignore[misc]
        tops[beam] = top_b
        res[f"seconds_beam{beam}"] = round(t_b, 3)
        res[f"items_per_s_beam{beam}"] = round(len(hist) * 10 / t_b, 1)
        res[f"ndcg10_beam{beam}"] = ranking_metrics(top_b, tgt, n_items=n_items)["ndcg@10"]
        res[f"speedup_vs_beam{beam}"] = round(t_b / t_s, 2)
    if a.refeed:
        top_r, t_r = _time(lambda: rank_beam(ar.built, hist, k=10, beam=20, cache=False))
        res["seconds_beam20_refeed"] = round(t_r, 3)
        res["refeed_same_lists_beam20"] = bool((top_r == tops[20]).all())
        res["refeed_differing_users_beam20"] = int((top_r != tops[20]).any(axis=1).sum())
        res["ndcg10_beam20_refeed"] = ranking_metrics(top_r, tgt, n_items=n_items)["ndcg@10"]
    sys.stdout.write(json.dumps(res, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
