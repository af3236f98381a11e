"""`simgr compare`: train every model the analyses need (once; cached), evaluate them on the test users,
keep the Table 3 numbers in per-run result files (model/analysis/runfiles.py) and the other analyses'
numbers in per-quantity entry files, both committed with the report, and write the report
(model/analysis/report.py).

Cache layout (not committed): WORK_DIR/NAME/runs/<dataset>-<method>-<preset>-<aggregator>-<view>-s<seed>[-<tag>]/
(a normal run directory plus summary.json once training finished) and WORK_DIR/NAME/topk/<key>.npy (top-20
lists). Committed: OUT_DIR/runs/*.json (Table 3) and OUT_DIR/analyses/*.json (one file per quantity of
Tables 1/4 and Figures 3/4), so a report can be built up over sittings and processes on fresh machines.
Views: ``converged`` (early stopping on validation NDCG@10 with the config's patience and epoch cap) and
``budget`` (the same wall-clock budget for every method).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model.analysis.config import CompareConfig
from model.config import BaselineConfig, ModelConfig, PromptConfig, TrainConfig
from model.data.dataset import Dataset
from model.data.jsonio import read_json, write_atomic
from model.errors import SimGRError
from model.evaluation.metrics import entropy, ranking_metrics
from model.locks import dir_lock
from model.training.run import LoadedRun, RunConfig, load_run, load_run_config

log = logging.getLogger(__name__)
GENERATIVE = ("autoregressive", "latte")
TOP = 20  # list length kept per user (Entropy@20 needs 20)


class Results:
    """The other analyses' numbers: one JSON file per computed quantity (its key, "/" written as "--"),
    saved as soon as it is computed. With ``compute=False`` (``--report-only``) a missing file is an error
    naming it instead of a computation."""

    def __init__(self, root: Path, *, compute: bool = True) -> None:
        self.root, self.compute = root, compute

    def path(self, key: str) -> Path:
        return self.root / (key.replace("/", "--") + ".json")

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        path = self.path(key)
        if path.is_file():
            return read_json(path)
        if not self.compute:
            raise SimGRError(f"{path}: missing; `simgr compare` without --report-only computes it")
        value = compute()
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(value, sort_keys=True) + "\n")  # one line: table1/exact holds 25k ranks
        return value


class Context:
    def __init__(self, cfg: CompareConfig, *, compute: bool = True) -> None:
        self.cfg = cfg
        self.results = Results(cfg.report_dir / "analyses", compute=compute)
        self._data: dict[str, Dataset] = {}
        self._runs: dict[str, LoadedRun] = {}

    def dataset(self, data_dir: str) -> Dataset:
        if data_dir not in self._data:
            self._data[data_dir] = Dataset.load(data_dir)
        return self._data[data_dir]

    def name(self, data_dir: str) -> str:
        return str(self.dataset(data_dir).info.name or Path(data_dir).name)

    def sample(self, data_dir: str) -> tuple[list[list[int]], np.ndarray]:
        """The fixed test-user sample: (histories, targets)."""
        data = self.dataset(data_dir)
        hist, targets = data.eval_examples("test", max_history=PromptConfig().max_history)
        n = len(hist)
        idx = np.arange(n)
        if self.cfg.eval_users and self.cfg.eval_users < n:
            idx = np.sort(np.random.default_rng(self.cfg.seed).choice(n, self.cfg.eval_users, replace=False))
        return [hist[i] for i in idx], np.asarray(targets)[idx]

    def hyper(self, method: str, hyper: dict[str, float] | None) -> dict[str, float]:
        """What sets one model apart: SASRec's grid point (``hyper``) or the method's tuned settings."""
        return {**self.cfg.hyper_for(method), **(hyper or {})}

    def run(self, data_dir: str, method: str, *, preset: str | None = None, aggregator: str = "mean",
            view: str = "converged", seed: int = 0, hyper: dict[str, float] | None = None) -> LoadedRun:
        """Train (unless cached) and load the best checkpoint of one model (``hyper``: SASRec's grid point;
        a tuned method's settings are added here)."""
        from model.training.train import train

        hyper = self.hyper(method, hyper)
        run_dir = self.run_dir(data_dir, method, preset=preset, aggregator=aggregator, view=view, seed=seed,
                               hyper=hyper)
        if run_dir.name in self._runs:
            return self._runs[run_dir.name]
        rc = self.run_config(data_dir, method, preset=preset, aggregator=aggregator, view=view, seed=seed,
                             hyper=hyper)
        with dir_lock(run_dir):  # another process training this model: wait, then load it
            if (run_dir / "config.json").is_file() and load_run_config(run_dir) != rc:
                raise SimGRError(f"{run_dir}: cached model trained (or started) under another run config than "
                                 "this compare config asks (patience, validation sample, ...); delete the "
                                 "directory to train it again")
            if not (run_dir / "summary.json").is_file():
                log.info("training %s", run_dir.name)
                summary = train(rc, run_dir, resume=True)
                (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        loaded = load_run(run_dir)
        loaded.built.model.eval()
        self._runs[run_dir.name] = loaded
        return loaded

    def run_dir(self, data_dir: str, method: str, *, preset: str | None = None, aggregator: str = "mean",
                view: str = "converged", seed: int = 0, hyper: dict[str, float] | None = None) -> Path:
        hyper = self.hyper(method, hyper)
        tag = f"-{hyper_tag(hyper)}" if hyper else ""
        key = f"{self.name(data_dir)}-{method}-{preset or self.cfg.preset}-{aggregator}-{view}-s{seed}{tag}"
        return self.cfg.cache_dir / "runs" / key

    def run_config(self, data_dir: str, method: str, *, preset: str | None, aggregator: str, view: str,
                   seed: int, hyper: dict[str, float]) -> RunConfig:
        cfg = self.cfg
        converged = view != "budget"
        shared = TrainConfig()
        tuned = cfg.hyper_for(method)  # not `hyper`: a SASRec grid point's "dropout" is its sasrec_dropout
        train = TrainConfig(epochs=cfg.epoch_cap, patience=cfg.patience_for(method),  # budget: the clock, not epochs
                            lr=hyper.get("lr", cfg.lr), time_budget_min=0.0 if converged else cfg.time_budget_min,
                            dropout=tuned.get("dropout", shared.dropout),
                            input_dropout=tuned.get("input_dropout", shared.input_dropout),
                            max_users=cfg.generative_max_users if method in GENERATIVE else 0,
                            valid_users=cfg.valid_users_for(method),
                            seed=42 + cfg.seed + seed)
        base = BaselineConfig(beam_size=cfg.table_beam)
        grid = hyper if method == "sasrec" else {}
        baseline = BaselineConfig(beam_size=cfg.table_beam, sasrec_dim=int(grid.get("dim", base.sasrec_dim)),
                                  sasrec_dropout=grid.get("dropout", base.sasrec_dropout))
        return RunConfig(data_dir=str(data_dir), method=method,
                         model=ModelConfig(backbone=preset or cfg.preset, aggregator=aggregator),  # type: ignore[arg-type]
                         prompt=PromptConfig(layout=cfg.layout),  # type: ignore[arg-type]
                         train=train, baseline=baseline)

    def summary(self, data_dir: str, method: str, **where: Any) -> Any:
        return read_json(self.run_dir(data_dir, method, **where) / "summary.json")


def hyper_tag(hyper: dict[str, float]) -> str:
    """{"dim": 128, "dropout": 0.2, "lr": 0.001} -> "dim128-dropout0.2-lr0.001" (a file-name-safe key)."""
    return "-".join(f"{k}{v:g}" for k, v in sorted(hyper.items()))


def topk_path(ctx: Context, key: str) -> Path:
    return ctx.cfg.cache_dir / "topk" / (key.replace("/", "_") + ".npy")


def rank_top(run: LoadedRun, histories: list[list[int]], *, beam: int | None = None) -> np.ndarray:
    """(U, TOP) lists; AR/Latte at the given beam, the others by their own exact ranking."""
    from model.baselines.autoregressive import rank_beam
    from model.baselines.latte import rank_latte

    beam = beam or run.cfg.baseline.beam_size
    if run.cfg.method == "autoregressive":
        return rank_beam(run.built, histories, k=TOP, beam=beam)
    if run.cfg.method == "latte":  # Latte's dedup rule at K = 10 (the metrics' cut-off); pad to TOP
        top = rank_latte(run.built, histories, k=10, beam=beam)
        return np.concatenate([top, np.full((len(top), TOP - 10), -1, dtype=np.int64)], axis=1)
    return run.method.rank(run.built, histories, k=TOP, batch_size=256, device="cpu", desc="rank")


def list_metrics(ctx: Context, data_dir: str, topk: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    data = ctx.dataset(data_dir)
    m: dict[str, Any] = ranking_metrics(topk, targets, n_items=data.n_items)
    cats = [it.categories[-1] if it.categories else None for it in data.items]
    for k in ctx.cfg.entropy_ks:
        m[f"entropy@{k}"] = entropy(topk[:, :k][topk[:, :k] >= 0])
        m[f"coverage@{k}"] = len(np.unique(topk[:, :k][topk[:, :k] >= 0])) / data.n_items
        if any(cats):
            labels = [cats[i] for i in topk[:, :k].ravel().tolist() if i >= 0 and cats[i]]
            m[f"entropy_category@{k}"] = entropy(labels) if labels else float("nan")
    return m


def _eval_key(ctx: Context, data_dir: str, method: str, beam: int | None, preset: str | None,
              aggregator: str) -> str:
    tuned = ctx.cfg.hyper_for(method)
    tag = f"-{hyper_tag(tuned)}" if tuned else ""
    return (f"eval/{ctx.name(data_dir)}/{method}/{preset or ctx.cfg.preset}/{aggregator}/converged-s0{tag}/"
            f"beam{beam or 0}")


def _rank_and_keep(ctx: Context, data_dir: str, method: str, beam: int | None, preset: str | None,
                   aggregator: str) -> tuple[np.ndarray, float]:
    """Rank the test users with the seed-0 converged model; keep the lists in the cache. (lists, seconds)"""
    run = ctx.run(data_dir, method, preset=preset, aggregator=aggregator)
    hist, _ = ctx.sample(data_dir)
    t0 = time.perf_counter()
    topk = rank_top(run, hist, beam=beam)
    seconds = time.perf_counter() - t0
    _keep_lists(ctx, _eval_key(ctx, data_dir, method, beam, preset, aggregator), topk)
    return topk, seconds


def _keep_lists(ctx: Context, key: str, topk: np.ndarray) -> None:
    path = topk_path(ctx, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, topk)


def _eval_entry(ctx: Context, data_dir: str, method: str, topk: np.ndarray, metrics: dict[str, Any],
                seconds: float, preset: str | None, aggregator: str) -> dict[str, Any]:
    """``list_metrics``' numbers for the (U, TOP) lists plus the ranking time, U and the training summary."""
    return {**metrics, "seconds": round(seconds, 3), "users": len(topk),
            "train": ctx.summary(data_dir, method, preset=preset, aggregator=aggregator)}


def evaluate(ctx: Context, data_dir: str, method: str, *, beam: int | None = None, preset: str | None = None,
             aggregator: str = "mean") -> dict[str, Any]:
    """The metrics entry of one seed-0 converged model on the test users (computed once, then read)."""
    if method in GENERATIVE and beam is None:
        beam = ctx.cfg.table_beam
    key = _eval_key(ctx, data_dir, method, beam, preset, aggregator)

    def compute() -> dict[str, Any]:
        topk, seconds = _rank_and_keep(ctx, data_dir, method, beam, preset, aggregator)
        m = _eval_entry(ctx, data_dir, method, topk, list_metrics(ctx, data_dir, topk, ctx.sample(data_dir)[1]),
                        seconds, preset, aggregator)
        log.info("%s: ndcg@10 %.4f in %.1f s", key, m["ndcg@10"], seconds)
        return m
    return ctx.results.get(key, compute)  # type: ignore[no-any-return]


def keep_ranking(ctx: Context, data_dir: str, method: str, topk: np.ndarray, metrics: dict[str, Any],
                 seconds: float) -> None:
    """Table 3's ranking by a seed-0 converged model (at the table beam) is also the analyses' evaluation of
    that model: keep it as their entry and lists, so they never rank the same users again."""
    beam = ctx.cfg.table_beam if method in GENERATIVE else None
    key = _eval_key(ctx, data_dir, method, beam, None, "mean")
    _keep_lists(ctx, key, topk)
    ctx.results.get(key, lambda: _eval_entry(ctx, data_dir, method, topk, metrics, seconds, None, "mean"))


def top_lists(ctx: Context, data_dir: str, method: str, *, beam: int | None = None) -> np.ndarray:
    """(U, TOP): the lists behind `evaluate`'s entry, from this machine's cache or ranked again when the
    entry was computed elsewhere (the lists themselves are not committed)."""
    if method in GENERATIVE and beam is None:
        beam = ctx.cfg.table_beam
    evaluate(ctx, data_dir, method, beam=beam)
    path = topk_path(ctx, _eval_key(ctx, data_dir, method, beam, None, "mean"))
    if path.is_file():
        return np.load(path)
    return _rank_and_keep(ctx, data_dir, method, beam, None, "mean")[0]
