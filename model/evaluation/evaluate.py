"""Full-ranking evaluation: every user is scored against every item (no candidate sampling)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.evaluation.metrics import (
    METRIC_KEYS,
    category_entropy,
    hit_ranks,
    ndcg_by_popularity,
    ranking_metrics,
)
from model.methods.base import Method
from model.network.assembly import Assembled


def evaluate_model(method: Method, built: Assembled, histories: Sequence[Sequence[int]], targets: Sequence[int],
                   *, batch_size: int = 256, device: torch.device | str = "cpu",
                   item_category: Sequence[str | None] | None = None, item_popularity: np.ndarray | None = None,
                   desc: str = "eval") -> dict[str, Any]:
    """The metrics of ``METRIC_KEYS``, plus ``entropy_category@10`` when categories are given and
    ``ndcg@10_by_popularity`` (head, torso, tail thirds of the users by their target's count in
    ``item_popularity``, e.g. ``Dataset.popularity()``) when counts are."""
    t0 = time.perf_counter()
    topk = method.rank(built, histories, k=10, batch_size=batch_size, device=device, desc=desc)
    n_items = built.vocab.n_items
    targets_arr = np.asarray(targets)  # (U,)
    metrics: dict[str, Any] = ranking_metrics(topk, targets_arr, n_items=n_items)
    metrics.update(n_users=len(histories), n_items=n_items, seconds=round(time.perf_counter() - t0, 3))
    if item_category is not None:
        metrics["entropy_category@10"] = category_entropy(topk, 10, item_category)
    if item_popularity is not None:
        metrics["ndcg@10_by_popularity"] = ndcg_by_popularity(hit_ranks(topk, targets_arr), targets_arr,
                                                              item_popularity)
    return metrics


# The file of RUN_DIR each number beyond METRIC_KEYS goes to, as <name>_<split>.json.
EXTRA_FILES = {"entropy_category@10": "diversity", "ndcg@10_by_popularity": "by_popularity"}


def write_metrics(metrics: dict[str, Any], run_dir: Path, split: str) -> Path:
    """metrics_<split>.json holds exactly METRIC_KEYS; category entropy goes to diversity_<split>.json and the
    popularity split to by_popularity_<split>.json, each where ``metrics`` has it."""
    path = run_dir / f"metrics_{split}.json"
    path.write_text(json.dumps({k: metrics[k] for k in METRIC_KEYS}, indent=2) + "\n")
    extras: dict[str, dict[str, Any]] = {}  # file name -> its numbers
    for key, name in EXTRA_FILES.items():
        if key in metrics:
            extras.setdefault(name, {})[key] = metrics[key]
    for name, extra in extras.items():
        (run_dir / f"{name}_{split}.json").write_text(json.dumps(extra, indent=2) + "\n")
    return path
