"""`simgr compare`: train every model the analyses need (once; cached), evaluate them on a fixed sample of
test users, keep every number in results.json and write the report (model/analysis/report.py).

Cache layout: WORK_DIR/NAME/runs/<dataset>-<method>-<preset>-<aggregator>/ (a normal run directory plus
summary.json once training finished), WORK_DIR/NAME/topk/<key>.npy (top-20 lists), results.json.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.analysis.config import CompareConfig, compare_config_json, load_compare_config
from model.config import BaselineConfig, ModelConfig, PromptConfig, TrainConfig
from model.data.dataset import Dataset
from model.data.jsonio import read_json
from model.evaluation.metrics import entropy, ranking_metrics
from model.training.run import LoadedRun, RunConfig, load_run

log = logging.getLogger(__name__)
GENERATIVE = ("autoregressive", "latte")
TOP = 20  # list length kept per user (Entropy@20 needs 20)


class Results:
    """results.json: one entry per computed quantity, saved after every entry (a killed run resumes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = read_json(path) if path.is_file() else {}

    def get(self, key: str, compute: Any) -> Any:
        if key not in self.data:
            self.data[key] = compute()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")
        return self.data[key]


class Context:
    def __init__(self, cfg: CompareConfig) -> None:
        self.cfg = cfg
        self.results = Results(cfg.cache_dir / "results.json")
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

    def run(self, data_dir: str, method: str, *, preset: str | None = None, aggregator: str = "mean") -> LoadedRun:
        """Train (unless cached) and load the best checkpoint of one model."""
        from model.training.train import train

        cfg = self.cfg
        preset = preset or cfg.preset
        key = f"{self.name(data_dir)}-{method}-{preset}-{aggregator}"
        if key in self._runs:
            return self._runs[key]
        run_dir = cfg.cache_dir / "runs" / key
        if not (run_dir / "summary.json").is_file():
            max_users = cfg.generative_max_users if method in GENERATIVE else 0
            rc = RunConfig(
                data_dir=str(data_dir), method=method,
                model=ModelConfig(backbone=preset, aggregator=aggregator),  # type: ignore[arg-type]
                prompt=PromptConfig(layout=cfg.layout),  # type: ignore[arg-type]
                train=TrainConfig(epochs=cfg.epochs, lr=cfg.lr, time_budget_min=cfg.time_budget_min,
                                  max_users=max_users, seed=42 + cfg.seed),
                baseline=BaselineConfig(beam_size=cfg.table_beam))
            log.info("training %s", key)
            summary = train(rc, run_dir, resume=True)
            (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        loaded = load_run(run_dir)
        loaded.built.model.eval()
        self._runs[key] = loaded
        return loaded

    def summary(self, data_dir: str, method: str, *, preset: str | None = None, aggregator: str = "mean") -> Any:
        key = f"{self.name(data_dir)}-{method}-{preset or self.cfg.preset}-{aggregator}"
        return read_json(self.cfg.cache_dir / "runs" / key / "summary.json")


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


def evaluate(ctx: Context, data_dir: str, method: str, *, beam: int | None = None, preset: str | None = None,
             aggregator: str = "mean") -> dict[str, Any]:
    if method in GENERATIVE and beam is None:
        beam = ctx.cfg.table_beam
    key = f"eval/{ctx.name(data_dir)}/{method}/{preset or ctx.cfg.preset}/{aggregator}/beam{beam or 0}"

    def compute() -> dict[str, Any]:
        run = ctx.run(data_dir, method, preset=preset, aggregator=aggregator)
        hist, targets = ctx.sample(data_dir)
        t0 = time.perf_counter()
        topk = rank_top(run, hist, beam=beam)
        seconds = time.perf_counter() - t0
        path = ctx.cfg.cache_dir / "topk" / (key.replace("/", "_") + ".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, topk)
        m = list_metrics(ctx, data_dir, topk, targets)
        m.update(seconds=round(seconds, 3), users=len(hist), train=ctx.summary(data_dir, method, preset=preset,
                                                                                 aggregator=aggregator))
        log.info("%s: ndcg@10 %.4f in %.1f s", key, m["ndcg@10"], seconds)
        return m
    return ctx.results.get(key, compute)  # type: ignore[no-any-return]


def table1(ctx: Context, data_dir: str) -> dict[str, Any]:
    """Beam size vs exact global search for the autoregressive model (+ SimGR's one forward)."""
    from model.baselines.autoregressive import ARModel, prompt_batches
    from model.baselines.beam import exact_leaf_scores, target_token_ranks

    cfg = ctx.cfg
    hist, targets = ctx.sample(data_dir)
    n_exact = min(cfg.exact_users, len(hist))

    def exact() -> dict[str, Any]:
        run = ctx.run(data_dir, "autoregressive")
        model: ARModel = run.built.model  # type: ignore[assignment]
        t0, tops, ranks = time.perf_counter(), [], []
        for _, batch in prompt_batches(run.built, hist[:n_exact], 8, "cpu", "exact"):
            scores = exact_leaf_scores(model, model.prompt_state(batch), model.trie)  # (b, n_leaves)
            items = model.trie.leaf_item[scores.topk(TOP, dim=1).indices]
            tops.append(items.numpy())
        seconds = time.perf_counter() - t0
        for s, batch in prompt_batches(run.built, hist, 64, "cpu", "ranks"):
            tgt = torch.tensor([run.built.vocab.sid_token_ids[t] for t in targets[s:s + len(batch.last)]])
            ranks.append(target_token_ranks(model, model.prompt_state(batch), model.trie, tgt).max(1).values)
        top = np.concatenate(tops)
        m = list_metrics(ctx, data_dir, top, targets[:n_exact])
        m.update(seconds=round(seconds, 3), users=n_exact, top5=top[:, :5].tolist(),
                 worst_token_rank=torch.cat(ranks).tolist())
        return m
    ex = ctx.results.get(f"table1/{ctx.name(data_dir)}/exact", exact)
    rows = {}
    for b in cfg.beams:
        m = evaluate(ctx, data_dir, "autoregressive", beam=b)
        path = cfg.cache_dir / "topk" / f"eval_{ctx.name(data_dir)}_autoregressive_{cfg.preset}_mean_beam{b}.npy"
        top = np.load(path)[:n_exact]
        overlap = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(top[:, :5].tolist(), ex["top5"], strict=True)])
        worst = np.asarray(ex["worst_token_rank"])
        rows[str(b)] = {**{k: m[k] for k in ("ndcg@10", "hr@10", "seconds", "users")},
                        "ndcg@10_exact_subset": _subset_ndcg(top, targets[:n_exact]),
                        "top5_overlap_exact": float(overlap), "theorem41_fraction": float((worst < b).mean())}
    simgr = evaluate(ctx, data_dir, "simgr")
    simgr_top = np.load(cfg.cache_dir / "topk" / f"eval_{ctx.name(data_dir)}_simgr_{cfg.preset}_mean_beam0.npy")
    return {"beams": rows, "exact": {k: ex[k] for k in ("ndcg@10", "hr@10", "seconds", "users")},
            "simgr": {**{k: simgr[k] for k in ("ndcg@10", "hr@10", "seconds", "users")},
                      "ndcg@10_exact_subset": _subset_ndcg(simgr_top[:n_exact], targets[:n_exact])}}


def _subset_ndcg(top: np.ndarray, targets: np.ndarray) -> float:
    return ranking_metrics(top, targets, n_items=1)["ndcg@10"]


def run_compare(config_path: str | Path) -> dict[str, Any]:
    from model.analysis.report import write_report

    cfg = load_compare_config(config_path)
    torch.set_num_threads(max(1, cfg.threads))
    ctx = Context(cfg)
    main = cfg.datasets[0]
    out: dict[str, Any] = {}
    if "table3" in cfg.analyses:
        out["table3"] = {ctx.name(d): {m: evaluate(ctx, d, m) for m in cfg.methods
                                       if not (m == "latte" and cfg.latte_main_only and d != main)}
                         for d in cfg.datasets}
        main_name = ctx.name(main)
        out["latte_beams"] = {str(b): evaluate(ctx, main, "latte", beam=b) for b in cfg.latte_beams
                              if "latte" in cfg.methods}
        out["table3_beam"] = {main_name: cfg.table_beam}
    if "table1" in cfg.analyses:
        out["table1"] = table1(ctx, main)
    if "table4" in cfg.analyses:
        out["table4"] = {a: evaluate(ctx, main, "simgr", aggregator=a) for a in cfg.aggregators}
    if "figure4" in cfg.analyses:
        out["figure4"] = {ctx.name(d): {m: evaluate(ctx, d, m) for m in ("autoregressive", "parallel", "simgr")}
                          for d in cfg.datasets}
    if "figure3" in cfg.analyses:
        out["figure3"] = {p: {m: evaluate(ctx, main, m, preset=p) for m in ("autoregressive", "simgr")}
                          for p in cfg.presets}
    cfg.report_dir.mkdir(parents=True, exist_ok=True)
    (cfg.report_dir / "compare_config.json").write_text(compare_config_json(cfg))
    report = write_report(cfg, out, command=f"simgr compare --config {config_path}")
    return {"report": str(report), "analyses": list(out), "cache": str(cfg.cache_dir)}
