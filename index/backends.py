"""Candidate generators behind ``ItemIndex``: each turns queries into rows of the item matrix worth
re-scoring. ``ItemIndex`` then scores the candidates exactly against the stored rows, so every type
returns the same scores for the same items and breaks ties the same way.

- ``FlatSearch``: every row, ``faiss.knn`` over the (memory-mapped) matrix itself, no second copy.
- ``SidSearch``: the code-trie branch-and-bound of ``index.sid_exact``; exact, usually sublinear.
- ``FaissSearch``: an approximate FAISS index (HNSW, IVF, IVF-PQ, any factory string). Filters go in
  as ``IDSelector`` search parameters on CPU (HNSW and IVF), by over-fetching elsewhere (GPU, wrappers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np

from index.sid_exact import SidTrie

_HNSW_PARAMS: Any = getattr(faiss, "SearchParametersHNSW")  # noqa: B009 (missing from the stubs)
_IVF_PARAMS: Any = getattr(faiss, "SearchParametersIVF")  # noqa: B009
GPU_MAX_K = 2048  # faiss GPU selection limit (GPU_MAX_SELECTION_K); past it ItemIndex searches the matrix exactly
PAD = 8  # extra candidates per query beyond k: room for ties at the k-th score
SLACK = 1e-4  # relative score margin between the approximate and the exact (re-scored) score


def _sorted_candidates(scores: np.ndarray, rows: np.ndarray, drop: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    keep = rows >= 0
    if drop is not None and drop.size:
        keep &= ~np.isin(rows, drop)
    return scores[keep], rows[keep]


class FlatSearch:
    """Exact: ``faiss.knn`` over the whole matrix, over-fetching past excluded and dead rows."""

    kind = "flat"

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix  # (N, D) float32, usually a read-only memory map shared with the bundle

    def candidates(self, q: np.ndarray, k: int, excl: Sequence[np.ndarray], dead: np.ndarray | None) -> list[np.ndarray]:
        n = self.matrix.shape[0]
        n_dead = 0 if dead is None else int(dead.size)
        fetch = min(n, k + max((len(e) for e in excl), default=0) + n_dead + PAD)
        scores, rows = self._knn(q, fetch)  # (B, fetch)
        out: list[np.ndarray] = []
        for r in range(q.shape[0]):
            drop = excl[r] if dead is None else np.concatenate([excl[r], dead])
            f, s, i = fetch, scores[r], rows[r]
            while (got := _settled(s, i, drop, k, complete=f >= n)) is None:
                f = min(n, 4 * f)
                s2, i2 = self._knn(q[r : r + 1], f)
                s, i = s2[0], i2[0]
            out.append(got)
        return out

    def _knn(self, q: np.ndarray, fetch: int) -> tuple[np.ndarray, np.ndarray]:
        return faiss.knn(q, self.matrix, fetch, metric=faiss.METRIC_INNER_PRODUCT)  # type: ignore[no-any-return]


def _settled(s: np.ndarray, i: np.ndarray, drop: np.ndarray, k: int, *, complete: bool) -> np.ndarray | None:
    """Rows of one fetched list that can reach the top k, or None when a row not fetched still could."""
    s_ok, i_ok = _sorted_candidates(s, i, drop)
    if complete:
        return i_ok
    if len(i_ok) < k:
        return None
    kth = float(s_ok[k - 1])
    cut = kth - SLACK * max(1.0, abs(kth))
    return i_ok[s_ok >= cut] if float(s[-1]) < cut else None


class SidSearch:
    """Exact for the mean aggregator: branch-and-bound over the semantic-ID trie."""

    kind = "sid-exact"

    def __init__(self, trie: SidTrie, n_rows: int) -> None:
        self.trie = trie
        self.n_rows = n_rows

    def candidates(self, q: np.ndarray, k: int, excl: Sequence[np.ndarray], dead: np.ndarray | None) -> list[np.ndarray]:
        out = []
        for r in range(q.shape[0]):
            drop = excl[r] if dead is None else np.concatenate([excl[r], dead])
            out.append(self.trie.candidates(q[r], k, drop, margin=SLACK))
        return out


def _params_class(index: Any) -> Any:
    """The search-parameter class that takes an ``IDSelector`` for this index, or None."""
    if isinstance(index, faiss.IndexHNSW):
        return _HNSW_PARAMS
    if isinstance(index, faiss.IndexIVF):
        return _IVF_PARAMS
    return None


class FaissSearch:
    """Approximate: a FAISS index whose ids are matrix rows."""

    def __init__(self, index: Any, *, kind: str, ef_search: int | None = None, nprobe: int | None = None,
                 rerank: int = 1, on_gpu: bool = False) -> None:
        self.index = index
        self.kind = kind
        self.ef_search, self.nprobe = ef_search, nprobe
        self.rerank = rerank  # candidates per result re-scored exactly (IVF-PQ scores are coarse)
        self.on_gpu = on_gpu
        self.resources: Any = None  # StandardGpuResources of a GPU index
        self._cls = None if on_gpu else _params_class(faiss.downcast_index(index))

    def with_params(self, *, ef_search: int | None = None, nprobe: int | None = None) -> FaissSearch:
        other = FaissSearch(self.index, kind=self.kind, ef_search=ef_search or self.ef_search,
                            nprobe=nprobe or self.nprobe, rerank=self.rerank, on_gpu=self.on_gpu)
        other.resources = self.resources
        return other

    def _params(self, sel: Any) -> Any:
        if self._cls is None:
            return None
        p = self._cls(sel=sel) if sel is not None else self._cls()
        if self._cls is _HNSW_PARAMS and self.ef_search:
            p.efSearch = self.ef_search
        if self._cls is _IVF_PARAMS and self.nprobe:
            p.nprobe = self.nprobe
        return p

    def candidates(self, q: np.ndarray, k: int, excl: Sequence[np.ndarray], dead: np.ndarray | None) -> list[np.ndarray]:
        fetch = min(int(self.index.ntotal), k * self.rerank + PAD)
        if fetch <= 0:
            return [np.empty(0, dtype=np.int64) for _ in range(q.shape[0])]
        filtered = dead is not None or any(len(e) for e in excl)
        if not filtered or self._cls is None:  # one batched search; over-fetch past the filters
            extra = 0 if not filtered else max(len(e) for e in excl) + (0 if dead is None else len(dead))
            f = min(int(self.index.ntotal), fetch + extra)
            _, rows = self.index.search(q, f, params=self._params(None))
            return [self._drop(rows[r], excl[r], dead) for r in range(q.shape[0])]
        out = []
        for r in range(q.shape[0]):
            drop = excl[r] if dead is None else np.concatenate([excl[r], dead])
            batch = faiss.IDSelectorBatch(drop.astype(np.int64))
            sel = faiss.IDSelectorNot(batch)
            _, rows = self.index.search(q[r : r + 1], fetch, params=self._params(sel))
            out.append(rows[0][rows[0] >= 0])
            del sel, batch  # the selector must outlive the search call above
        return out

    @staticmethod
    def _drop(rows: np.ndarray, excl: np.ndarray, dead: np.ndarray | None) -> np.ndarray:
        drop = excl if dead is None else np.concatenate([excl, dead])
        return _sorted_candidates(rows.astype(np.float32), rows, drop)[1]

    def remove(self, rows: np.ndarray) -> None:
        """IVF indexes drop the rows (``remove_ids``); graph indexes keep them, filtered as retired."""
        if isinstance(faiss.downcast_index(self.index), faiss.IndexIVF) and not self.on_gpu:
            self.index.remove_ids(faiss.IDSelectorBatch(rows.astype(np.int64)))
