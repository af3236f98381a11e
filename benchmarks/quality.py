"""Quality benchmark (not a test): train SimGR on an LC-Rec-format dataset within a CPU budget and print
ONE JSON line with the test metrics plus train_samples_per_s, eval_users_per_s and minutes.

    python benchmarks/quality.py --data ../shared/data/instruments --budget-min 30

Uses the dataset's given semantic IDs (X.index.json) when present, else builds RQ-VAE IDs from its text.
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

import torch

from model.config import ModelConfig, PromptConfig, RQVAEConfig, TrainConfig
from model.data.prepare import prepare_dataset
from model.evaluation.evaluate import evaluate_model, write_metrics
from model.semantic_ids.assign import build_semantic_ids
from model.training.run import RunConfig, load_run
from model.training.train import train


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="LC-Rec folder with X.inter.json")
    p.add_argument("--budget-min", type=float, default=30.0, help="training wall-clock budget")
    p.add_argument("--preset", default="small")
    p.add_argument("--layout", default="items", choices=["items", "tokens"])
    p.add_argument("--aggregator", default="mean")
    p.add_argument("--lr", type=float, default=TrainConfig().lr)
    p.add_argument("--tau", type=float, default=ModelConfig().tau)
    p.add_argument("--label-smoothing", type=float, default=ModelConfig().label_smoothing)
    p.add_argument("--smoothing-prefix", type=int, default=ModelConfig().smoothing_prefix,
                   help="k > 0: label smoothing spreads over the items sharing the target's first k codes")
    p.add_argument("--epochs", type=int, default=50, help="epoch cap; the learning rate anneals to 0 by the "
                   "cap or the budget, whichever comes first")
    p.add_argument("--dropout", type=float, default=TrainConfig().dropout)
    p.add_argument("--input-dropout", type=float, default=TrainConfig().input_dropout)
    p.add_argument("--hidden-dropout", type=float, default=TrainConfig().hidden_dropout)
    p.add_argument("--weight-decay", type=float, default=TrainConfig().weight_decay)
    p.add_argument("--ema-decay", type=float, default=TrainConfig().ema_decay, help="0 = no weight average")
    p.add_argument("--seed", type=int, default=TrainConfig().seed, help="init, batch order and dropout")
    p.add_argument("--uniqueness", default=RQVAEConfig().uniqueness, choices=["lowest", "spread"],
                   help="spread: given IDs gain a spread level (model/semantic_ids/assign.py)")
    p.add_argument("--unique-codes", type=int, default=RQVAEConfig().unique_codes)
    p.add_argument("--autocast", default=TrainConfig().autocast, choices=["auto", "bf16", "off"],
                   help="bf16: mixed precision on the CPU too (pays with AMX; model/training/precision.py)")
    p.add_argument("--workdir", type=Path, help="keep data and run here (default: a temp dir)")
    a = p.parse_args()
    try:  # the config's cross-field rules, before minutes of data preparation
        model_cfg = ModelConfig(backbone=a.preset, aggregator=a.aggregator, tau=a.tau,
                                label_smoothing=a.label_smoothing, smoothing_prefix=a.smoothing_prefix)
    except ValueError as exc:
        p.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("SIMGR_NO_PROGRESS", "1")
    work = a.workdir or Path(tempfile.mkdtemp(prefix="simgr-quality-"))
    t0 = time.monotonic()
    ids = f"-{a.uniqueness}{a.unique_codes}" if a.uniqueness != "lowest" else ""
    data_dir = work / f"data{ids}"  # one per ID rule: a kept run must find the IDs it was trained on
    run_dir = work / (f"run-{a.preset}-{a.layout}-{a.aggregator}-d{a.dropout}-i{a.input_dropout}"
                      f"-h{a.hidden_dropout}-t{a.tau}-lr{a.lr}-wd{a.weight_decay}"
                      + (f"-ema{a.ema_decay}" if a.ema_decay else "") + ids
                      + (f"-s{a.seed}" if a.seed != TrainConfig().seed else "")
                      + (f"-e{a.epochs}" if a.epochs != 50 else "")
                      + (f"-{a.autocast}" if a.autocast != TrainConfig().autocast else "")
                      + (f"-ls{a.label_smoothing}" if a.label_smoothing else "")
                      + (f"-sp{a.smoothing_prefix}" if a.smoothing_prefix else ""))
    prepare_dataset(source="lcrec", input_path=a.data, out_dir=data_dir)
    given = sorted(a.data.glob("*.index.json"))
    build_semantic_ids(data_dir=data_dir, given=given[0] if given else None,
                       cfg=RQVAEConfig(uniqueness=a.uniqueness, unique_codes=a.unique_codes))
    cfg = RunConfig(
        data_dir=str(data_dir),
        model=model_cfg,
        prompt=PromptConfig(layout=a.layout),
        train=TrainConfig(epochs=a.epochs, lr=a.lr, time_budget_min=a.budget_min, patience=100,
                          dropout=a.dropout, input_dropout=a.input_dropout, hidden_dropout=a.hidden_dropout,
                          weight_decay=a.weight_decay, ema_decay=a.ema_decay, seed=a.seed,
                          autocast=a.autocast),
    )
    summary = train(cfg, run_dir, resume=True)
    log = [json.loads(x) for x in (run_dir / "train_log.jsonl").read_text().splitlines()]
    run = load_run(run_dir)
    hist, targets = run.data.eval_examples("test", max_history=cfg.prompt.max_history)
    m = evaluate_model(run.method, run.built, hist, targets, batch_size=256)
    write_metrics(m, run_dir, "test")
    full = [r for r in log if not r.get("partial_epoch")] or log
    result = {
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()},
        "valid_ndcg@10": round(summary["best_valid_ndcg@10"], 4),
        "epochs": summary["epochs"], "best_epoch": summary["best_epoch"],
        "train_samples_per_s": round(sum(r["train_samples_per_s"] for r in full) / len(full), 1),
        "eval_users_per_s": round(m["n_users"] / m["seconds"], 1),
        "minutes": round((time.monotonic() - t0) / 60, 2),
        "preset": a.preset, "layout": a.layout, "aggregator": a.aggregator, "dropout": a.dropout,
        "input_dropout": a.input_dropout, "hidden_dropout": a.hidden_dropout, "tau": a.tau, "lr": a.lr,
        "weight_decay": a.weight_decay, "ema_decay": a.ema_decay, "uniqueness": a.uniqueness,
        "unique_codes": a.unique_codes, "threads": torch.get_num_threads(), "budget_min": a.budget_min,
        "seed": a.seed, "max_epochs": a.epochs, "autocast": a.autocast,
        "label_smoothing": a.label_smoothing, "smoothing_prefix": a.smoothing_prefix,
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
