"""`simgr demo`: MovieLens-100k end to end on a CPU — prepare, semantic IDs from titles and genres, train
the `small` preset under a time budget, evaluate, export, show two users' top-10, optionally serve."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from model.config import ModelConfig, PromptConfig, RQVAEConfig, TrainConfig

log = logging.getLogger("simgr.demo")


def _say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _show_users(bundle_dir: Path, data_dir: Path, users: list[int]) -> None:
    from index.item_index import ItemIndex
    from model.data.dataset import Dataset
    from model.export.bundle import Bundle

    bundle, data = Bundle.load(bundle_dir), Dataset.load(data_dir)
    index = ItemIndex.load(bundle_dir, expect=bundle.manifest.index, matrix=bundle.embeddings)
    hist, _ = data.eval_examples("test", max_history=bundle.max_history)
    for u in users:
        h = hist[u]
        scores, ids = index.search(bundle.encode_users([h]), 10, exclude=[set(h)])
        _say(f"\nuser {data.user_ids[u]} — last watched: "
             + "; ".join(str(bundle.catalog.row(i).title) for i in h[-5:]))
        for rank, (i, s) in enumerate(zip(ids[0].tolist(), scores[0].tolist(), strict=True), 1):
            _say(f"  {rank:2d}. {bundle.catalog.row(i).title}  (score {s:.3f})")


def run_demo(a: argparse.Namespace) -> int:
    from model.data.prepare import prepare_dataset
    from model.evaluation.evaluate import evaluate_model, write_metrics
    from model.export.export import export_run
    from model.semantic_ids.assign import build_semantic_ids
    from model.training.run import RunConfig, load_run
    from model.training.train import train

    t0 = time.monotonic()
    work: Path = a.workdir
    data_dir, run_dir, bundle_dir = work / "data", work / "run", work / "bundle"
    _say(f"[1/5] prepare MovieLens-100k -> {data_dir}")
    info = prepare_dataset(source="movielens100k", input_path=None, out_dir=data_dir)
    _say(f"      {info['n_users']} users, {info['n_items']} items, {info['n_interactions']} interactions")
    _say("[2/5] semantic IDs: all-MiniLM-L6-v2 on titles + genres -> RQ-VAE")
    report = build_semantic_ids(data_dir=data_dir, cfg=RQVAEConfig(epochs=a.rqvae_epochs))
    _say(f"      collision rate before dedup {report['collision_rate_before_dedup']:.3f}, "
         f"levels {report['n_levels']}")
    _say(f"[3/5] train SimGR ({a.preset}) for at most {a.time_budget_min} min")
    cfg = RunConfig(data_dir=str(data_dir), model=ModelConfig(backbone=a.preset), prompt=PromptConfig(),
                    train=TrainConfig(time_budget_min=a.time_budget_min, epochs=20))
    summary = train(cfg, run_dir, resume=True)
    _say(f"      {summary['epochs']} epochs, best valid NDCG@10 {summary['best_valid_ndcg@10']:.4f}")
    _say("[4/5] evaluate on the test split (full ranking over all items)")
    run = load_run(run_dir)
    hist, targets = run.data.eval_examples("test", max_history=run.cfg.prompt.max_history)
    metrics = evaluate_model(run.method, run.built, hist, targets)
    write_metrics(metrics, run_dir, "test")
    _say("      " + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}))
    _say(f"[5/5] export -> {bundle_dir}")
    result = export_run(run_dir, bundle_dir, force=True)  # the demo owns its workdir
    _say(f"      model version {result['model_version']}, index == exact top-10 for "
         f"{result['checked_users']} users")
    _show_users(bundle_dir, data_dir, [0, 1])
    _say(f"\ndemo finished in {(time.monotonic() - t0) / 60:.1f} min")
    if not a.serve:
        _say(f"serve it with: simgr serve --artifacts {bundle_dir}")
        return 0
    _say(f"\nserving {bundle_dir} on http://127.0.0.1:{a.port} (Ctrl-C to stop). Try:\n"
         f"  curl -s -X POST localhost:{a.port}/recommend -H 'content-type: application/json' "
         "-d '{\"history\": [\"1\", \"50\", \"181\"], \"k\": 5}'")
    from service.cli import serve as serve_cmd

    parser = argparse.ArgumentParser()
    serve_cmd.add_arguments(parser)
    return serve_cmd.run(parser.parse_args(["--artifacts", str(bundle_dir), "--port", str(a.port)]))
