"""Table 1 analogue of `simgr compare`: beam size vs exact global search for the autoregressive model."""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np
import torch

from model.analysis.runner import TOP, Context, evaluate, list_metrics, top_lists
from model.evaluation.metrics import ranking_metrics


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
        t0 = time.perf_counter()
        top = np.empty((n_exact, TOP), dtype=np.int64)
        for idx, batch in prompt_batches(run.built, hist[:n_exact], 8, "cpu", "exact"):
            scores = exact_leaf_scores(model, model.prompt_state(batch), model.trie)  # (b, n_leaves)
            top[idx] = model.trie.leaf_item[scores.topk(TOP, dim=1).indices].numpy()
        seconds = time.perf_counter() - t0
        ranks = torch.empty(len(hist), dtype=torch.long)
        for idx, batch in prompt_batches(run.built, hist, 64, "cpu", "ranks"):
            tgt = torch.from_numpy(run.built.vocab.sid_token_ids[targets[idx]])
            ranks[idx] = target_token_ranks(model, model.prompt_state(batch), model.trie, tgt).max(1).values
        m = list_metrics(ctx, data_dir, top, targets[:n_exact])
        m.update(seconds=round(seconds, 3), users=n_exact, top5=top[:, :5].tolist(),
                 worst_token_rank=ranks.tolist())
        return m
    name = ctx.name(data_dir)
    ex = ctx.results.get(f"table1/{name}/exact", exact)
    worst = np.asarray(ex["worst_token_rank"])

    def row(b: int) -> dict[str, Any]:
        m = evaluate(ctx, data_dir, "autoregressive", beam=b)
        top = top_lists(ctx, data_dir, "autoregressive", beam=b)[:n_exact]
        overlap = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(top[:, :5].tolist(), ex["top5"], strict=True)])
        return {**{k: m[k] for k in ("ndcg@10", "hr@10", "seconds", "users")},
                "ndcg@10_exact_subset": _subset_ndcg(top, targets[:n_exact]),
                "top5_overlap_exact": float(overlap), "theorem41_fraction": float((worst < b).mean())}

    def simgr() -> dict[str, Any]:
        m = evaluate(ctx, data_dir, "simgr")
        top = top_lists(ctx, data_dir, "simgr")[:n_exact]
        return {**{k: m[k] for k in ("ndcg@10", "hr@10", "seconds", "users")},
                "ndcg@10_exact_subset": _subset_ndcg(top, targets[:n_exact])}
    rows = {str(b): ctx.results.get(f"table1/{name}/beam{b}", functools.partial(row, b)) for b in cfg.beams}
    return {"beams": rows, "exact": {k: ex[k] for k in ("ndcg@10", "hr@10", "seconds", "users")},
            "simgr": ctx.results.get(f"table1/{name}/simgr", simgr)}


def _subset_ndcg(top: np.ndarray, targets: np.ndarray) -> float:
    return ranking_metrics(top, targets, n_items=1)["ndcg@10"]
