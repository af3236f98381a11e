"""Tuning an approximate index: the cheapest efSearch / nprobe whose recall@10 against exact search
reaches a target, measured on real queries (validation users' embeddings).

Recall@10 of one query = |approximate top-10 ∩ exact top-10| / 10; the mean over queries is reported.
A cheaper setting is a smaller efSearch / nprobe (search cost grows with both), so the ladder is walked
upwards and the first setting that reaches the target wins.
"""

from __future__ import annotations

import faiss
import numpy as np

from index.errors import RecallTargetError
from index.item_index import ItemIndex

EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
NPROBE_LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found_q ∩ truth_q| / |truth_q|; found, truth (Q, k) ids, -1 = none."""
    hits, total = 0, 0
    for f, t in zip(found, truth, strict=True):
        want = set(t[t >= 0].tolist())
        hits += len(want & set(f[f >= 0].tolist()))
        total += len(want)
    return hits / total if total else 1.0


def exact_truth(index: ItemIndex, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """(Q, k) exact top-k ids over the same matrix, by flat search."""
    flat = ItemIndex.build(index.matrix, ids=None if index.identity_ids else index.ids[: index.matrix.shape[0]])
    return flat.search(queries, k)[1]


def _ladder(index: ItemIndex, max_search: int, k: int) -> tuple[str, list[int]]:
    raw = index.faiss_index
    inner = faiss.downcast_index(raw) if raw is not None else None  # type: ignore[arg-type]
    if isinstance(inner, faiss.IndexHNSW):
        return "ef_search", [v for v in EF_LADDER if k <= v <= max_search] or [max(k, min(max_search, 16))]
    if isinstance(inner, faiss.IndexIVF):
        top = min(int(inner.nlist), max_search)
        return "nprobe", [v for v in NPROBE_LADDER if v <= top] + ([top] if top not in NPROBE_LADDER else [])
    return "", []


def tune(index: ItemIndex, queries: np.ndarray, *, min_recall: float, max_search: int, k: int = 10) -> ItemIndex:
    """``index`` with the cheapest search setting reaching ``min_recall``, its measured recall recorded.

    Raises RecallTargetError naming the best recall found when no setting up to ``max_search`` does."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, index.ntotal)
    truth = exact_truth(index, q, k)
    name, values = _ladder(index, max_search, k)
    tried: list[tuple[float, str]] = []
    for value in values or [0]:
        cand = index.with_search(**{name: value}) if name else index
        recall = recall_at_k(cand.search(q, k)[1], truth)
        tried.append((recall, f"{name}={value}" if name else "its only setting"))
        if recall >= min_recall:
            return cand.with_recall(recall, len(q))
    best, where = max(tried)
    raise RecallTargetError(
        f"no setting of the {index.spec.kind} index reaches recall@{k} {min_recall} on {len(q)} validation "
        f"users: the best was {best:.4f} ({where}); raise --max-search, choose another --index, or lower "
        "--min-recall")
