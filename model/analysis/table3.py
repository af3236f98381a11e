"""Table 3 analogue of `simgr compare`: every method on every dataset, over seeds, in two views.

- converged (the main view): each model trains until validation NDCG@10 has not improved for ``patience``
  epochs, under an epoch cap meant never to be hit (a run that hits it says so in its file);
- budget (the second view): the same wall-clock training budget for every method.

SASRec is tuned first: a grid over dimension x dropout x learning rate, each point trained to convergence
with seed 0 and selected on validation NDCG@10; its seeds then use the selected point. Every model is
evaluated on every test user (or the config's fixed sample), full ranking, beam ``table_beam`` for the
generative methods. Each run leaves one result file (model/analysis/runfiles.py).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator, Mapping

from model.analysis.config import CompareConfig
from model.analysis.runfiles import METRICS, RunKey, RunResult, TrainInfo, load_runs, save_run
from model.analysis.runner import GENERATIVE, Context, hyper_tag, keep_ranking, list_metrics, rank_top
from model.errors import SimGRError

log = logging.getLogger(__name__)


def method_seeds(ctx: Context, method: str, view: str) -> int:
    cfg = ctx.cfg
    if view == "budget":
        return cfg.budget_seeds
    return (cfg.generative_seeds or cfg.seeds) if method in GENERATIVE else cfg.seeds


def cells(ctx: Context) -> Iterator[tuple[str, str, str]]:
    """(data_dir, method, view) of every Table 3 cell the config asks for."""
    cfg = ctx.cfg
    views = ("converged", "budget") if cfg.budget_view else ("converged",)
    for view, d, m in itertools.product(views, cfg.datasets, cfg.methods):
        if not (m == "latte" and cfg.latte_main_only and d != cfg.datasets[0]):
            yield d, m, view


def grid_points(ctx: Context) -> list[dict[str, float]]:
    cfg = ctx.cfg
    return [{"dim": float(d), "dropout": p, "lr": lr}
            for d, p, lr in itertools.product(cfg.sasrec_dims, cfg.sasrec_dropouts, cfg.sasrec_lrs)]


def grid_keys(ctx: Context, data_dir: str) -> list[RunKey]:
    return [RunKey(ctx.name(data_dir), "sasrec", "grid", 0, hyper_tag(h)) for h in grid_points(ctx)]


def expected_keys(ctx: Context) -> list[RunKey]:
    """Every run file the Table 3 report needs."""
    keys: list[RunKey] = []
    for d, m, view in cells(ctx):
        if m == "sasrec" and view == "converged":
            keys += grid_keys(ctx, d)
        keys += [RunKey(ctx.name(d), m, view, k) for k in range(method_seeds(ctx, m, view))]
    return list(dict.fromkeys(keys))


def check_protocol(cfg: CompareConfig, runs: Mapping[RunKey, RunResult]) -> None:
    """A run file trained under another patience, epoch cap, validation sample or tuned settings than the
    config now asks is an error naming it, so a report never mixes two stopping rules or two settings."""
    stale = [k.filename for k, r in runs.items()
             if (r.train.patience, r.train.epoch_cap, r.train.valid_users)
             != (cfg.patience_for(k.method), cfg.epoch_cap, cfg.valid_users_for(k.method))
             or (k.method != "sasrec" and r.hyper != cfg.hyper_for(k.method))]
    if stale:
        raise SimGRError(f"{len(stale)} run file(s) trained under another patience, epoch cap, validation "
                         f"sample or tuned settings than the config's: {', '.join(stale)}; delete them to train "
                         "them again (a cached model resumes from its last epoch)")


def produce(ctx: Context, key: RunKey, data_dir: str, hyper: dict[str, float]) -> RunResult:
    """Train (or reuse the cached model) and evaluate one run; write and return its result file."""
    cfg = ctx.cfg
    path = cfg.report_dir / "runs" / key.filename
    if path.is_file():
        found = load_runs(path.parent, [key])
        check_protocol(cfg, found)
        return found[key]
    view = "converged" if key.view == "grid" else key.view
    run = ctx.run(data_dir, key.method, view=view, seed=key.seed, hyper=hyper or None)
    summary = ctx.summary(data_dir, key.method, view=view, seed=key.seed, hyper=hyper or None)
    hist, targets = ctx.sample(data_dir)
    t0 = time.perf_counter()
    top = rank_top(run, hist, beam=cfg.table_beam if key.method in GENERATIVE else None)
    seconds = time.perf_counter() - t0
    m = list_metrics(ctx, data_dir, top, targets)
    if key.view == "converged" and key.seed == 0 and hyper == cfg.hyper_for(key.method):  # the analyses' model
        keep_ranking(ctx, data_dir, key.method, top, m, seconds)  # its metrics are Table 3's, not recomputed
    tc = run.cfg.train
    info = TrainInfo(epochs=summary["epochs"], best_epoch=summary["best_epoch"],
                     best_valid_ndcg10=summary["best_valid_ndcg@10"], minutes=summary["minutes"],
                     out_of_time=summary["out_of_time"], patience=tc.patience, epoch_cap=tc.epochs,
                     hit_epoch_cap=summary["epochs"] >= tc.epochs, targets=summary["targets"],
                     valid_users=tc.valid_users)
    result = RunResult(dataset=key.dataset, method=key.method, view=key.view, seed=key.seed,  # type: ignore[arg-type]
                       tag=key.tag, preset=run.cfg.model.backbone, hyper=hyper,
                       metrics={k: float(m[k]) for k in METRICS}, users=len(hist),
                       beam=cfg.table_beam if key.method in GENERATIVE else 0, rank_seconds=round(seconds, 3),
                       threads=cfg.threads, train=info)
    save_run(path.parent, result)
    log.info("%s: test NDCG@10 %.4f", key.filename, result.metrics["ndcg@10"])
    return result


def select_sasrec(ctx: Context, data_dir: str) -> dict[str, float]:
    """Train the SASRec grid (seed 0, converged) and return the point with the best validation NDCG@10."""
    points = grid_points(ctx)
    results = [produce(ctx, k, data_dir, h) for k, h in zip(grid_keys(ctx, data_dir), points, strict=True)]
    best = max(range(len(points)), key=lambda i: results[i].train.best_valid_ndcg10)
    return points[best]


def produce_all(ctx: Context, only: tuple[str, ...] = ()) -> int:
    """Every missing Table 3 run file (of the methods in ``only``, when given); returns how many exist now."""
    done = 0
    for d, m, view in cells(ctx):
        if only and m not in only:
            continue
        hyper = select_sasrec(ctx, d) if m == "sasrec" else ctx.cfg.hyper_for(m)
        for k in range(method_seeds(ctx, m, view)):
            produce(ctx, RunKey(ctx.name(d), m, view, k), d, hyper)
            done += 1
    return done
