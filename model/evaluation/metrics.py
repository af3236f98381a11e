"""Full-ranking metrics over top-K lists.

Ranks are 0-based: a hit at rank r contributes 1/log2(r + 2) to NDCG (one relevant item, so IDCG = 1).
Example: targets [5, 9], top-3 lists [[5, 1, 2], [3, 9, 4]] ->
    hr@1 = 0.5, hr@3 = 1.0, ndcg@3 = (1 + 1/log2(3)) / 2 = 0.8155
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

METRIC_KEYS = ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "coverage@10", "entropy@10",
               "n_users", "n_items", "seconds")


def hit_ranks(topk: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(U,) 0-based rank of the target in each top-K list, -1 when absent. topk (U, K), targets (U,)."""
    hits = topk == targets[:, None]  # (U, K)
    return np.where(hits.any(1), hits.argmax(1), -1)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    return float(((ranks >= 0) & (ranks < k)).mean()) if len(ranks) else 0.0


def ndcg_gains(ranks: np.ndarray, k: int) -> np.ndarray:
    """(U,) each user's NDCG@k with one relevant item: 1/log2(rank + 2) inside the top k, else 0."""
    ok = (ranks >= 0) & (ranks < k)
    gains = np.zeros(len(ranks))
    gains[ok] = 1.0 / np.log2(ranks[ok] + 2.0)
    return gains


def ndcg(ranks: np.ndarray, k: int) -> float:
    return float(ndcg_gains(ranks, k).mean()) if len(ranks) else 0.0


def popularity_parts(targets: np.ndarray, popularity: np.ndarray, *, groups: int = 3) -> list[np.ndarray]:
    """The users (indices into ``targets``) in ``groups`` near-equal parts by their target's training count
    ``popularity[target]``, the most popular targets first; ties keep user order.

    Example: targets [4, 5, 6], popularity {4: 1, 5: 9, 6: 3}, groups 3 -> [[1], [2], [0]]
    """
    order = np.argsort(-popularity[targets], kind="stable")  # (U,) most popular target first
    return np.array_split(order, groups)


def ndcg_by_popularity(ranks: np.ndarray, targets: np.ndarray, popularity: np.ndarray, *, k: int = 10,
                       groups: int = 3) -> list[float]:
    """NDCG@k of each part of ``popularity_parts`` (head first); an empty part scores 0.

    Example: ranks [0, -1, 1], targets [4, 5, 6], popularity {4: 1, 5: 9, 6: 3} -> [0.0, 1/log2(3), 1.0]
    """
    return [ndcg(ranks[part], k) for part in popularity_parts(targets, popularity, groups=groups)]


def coverage(topk: np.ndarray, k: int, n_items: int) -> float:
    """Fraction of the catalog that appears in at least one top-k list."""
    return float(len(np.unique(topk[:, :k])) / n_items) if n_items else 0.0


def entropy(labels: Sequence[object] | np.ndarray) -> float:
    """Shannon entropy (nats) of the exposure distribution of ``labels`` (one entry per exposure).

    entropy([1, 1, 2, 2]) = log 2 = 0.6931"""
    counts = np.array(list(Counter(np.asarray(labels).ravel().tolist()).values()), dtype=np.float64)
    if counts.sum() == 0:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def category_entropy(topk: np.ndarray, k: int, item_category: Sequence[str | None]) -> float:
    """Entropy of exposure over item categories (items without a category are left out)."""
    cats = [item_category[i] for i in topk[:, :k].ravel().tolist() if item_category[i]]
    return entropy(cats) if cats else math.nan


def ranking_metrics(topk: np.ndarray, targets: np.ndarray, *, n_items: int) -> dict[str, float]:
    """HR@1/5/10, NDCG@5/10, coverage@10, entropy@10 (items) from (U, >=10) top lists."""
    ranks = hit_ranks(topk, targets)
    return {
        "hr@1": hit_rate(ranks, 1), "hr@5": hit_rate(ranks, 5), "hr@10": hit_rate(ranks, 10),
        "ndcg@5": ndcg(ranks, 5), "ndcg@10": ndcg(ranks, 10),
        "coverage@10": coverage(topk, 10, n_items),
        "entropy@10": entropy(topk[:, :10]),
    }
