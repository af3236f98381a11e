"""Exact inner-product top-K over item embeddings, with per-query allow/deny filters.

One FAISS ``IndexIDMap2(IndexFlatIP)`` holds the item embeddings under int64 ids (the item
indices 0..N-1 by default). Serving scores a user embedding h against every item e_i with
<h, e_i> (SimGR, arXiv 2602.07847, eq. for p(i|C)) and takes the top K.

Filters never make a row come back short while enough candidates remain:
- ``exclude`` (e.g. the items already seen) over-fetches ``k + |exclude|`` in ONE batched
  search and drops the excluded ids: at most ``|exclude|`` of the fetched ids can be dropped,
  so at least ``k`` survive whenever at least ``k`` candidates remain.
- ``allow`` (a candidate set) scores exactly the allowed rows with numpy, so it works the same
  on CPU and GPU indexes (FAISS GPU silently ignores IDSelectors, faiss#3924).

Rows with fewer than ``k`` remaining candidates are padded with id -1 and score -inf.
The class is not thread-safe on GPU (``StandardGpuResources`` has one user): call it from one
worker, as ``service/batcher.py`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.errors import IndexFormatError

log = logging.getLogger(__name__)

GPU_MAX_K = 2048  # faiss GPU selection limit (GPU_MAX_SELECTION_K); larger k runs the exact numpy path


def _as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must have shape (B, {dim}), got {tuple(q.shape)}")
    if not np.isfinite(q).all():
        raise ValueError("queries contain NaN or Inf")
    return q


def exact_topk(queries: np.ndarray, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Numpy reference: top-k rows of ``embeddings`` by inner product with each query.

    queries (B, D), embeddings (N, D) -> scores (B, k) float32, ids (B, k) int64 (row positions),
    best first; padded with -inf / -1 when k > N.
    """
    scores = np.asarray(queries, dtype=np.float32) @ np.asarray(embeddings, dtype=np.float32).T  # (B, N)
    return _topk_rows(scores, np.arange(scores.shape[1], dtype=np.int64), k)


def _topk_rows(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of each row of ``scores`` (B, M) whose columns carry ``ids`` (M,); pads to k."""
    b, m = scores.shape
    out_s = np.full((b, k), -np.inf, dtype=np.float32)
    out_i = np.full((b, k), -1, dtype=np.int64)
    take = min(k, m)
    if take == 0:
        return out_s, out_i
    part = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < m else np.tile(np.arange(m), (b, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)  # (B, take)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    out_s[:, :take] = np.take_along_axis(scores, best, axis=1)
    out_i[:, :take] = ids[best]
    return out_s, out_i


class ItemIndex:
    """Exact top-K inner-product search over item embeddings (FAISS ``IndexIDMap2(IndexFlatIP)``)."""

    def __init__(
        self, index: Any, *, embeddings: np.ndarray, ids: np.ndarray, gpu_resources: Any = None
    ) -> None:
        self._index = index  # faiss index (CPU IndexIDMap2, or its GPU clone)
        self._gpu_resources = gpu_resources  # StandardGpuResources kept alive as long as the GPU index
        self._embeddings = embeddings  # (N, D) float32, row i has id ids[i]; for the exact filtered path
        self._ids = ids  # (N,) int64
        self._pos = {int(v): i for i, v in enumerate(ids.tolist())}  # id -> row
        self.on_gpu = gpu_resources is not None

    # construction / persistence

    @classmethod
    def build(cls, embeddings: np.ndarray, *, ids: np.ndarray | None = None) -> ItemIndex:
        """Index ``embeddings`` (N, D) under ``ids`` (N,) int64 (default 0..N-1)."""
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
            raise ValueError(f"embeddings must be a non-empty (N, D) array, got shape {tuple(emb.shape)}")
        if not np.isfinite(emb).all():
            raise ValueError("embeddings contain NaN or Inf")
        n, d = emb.shape
        id_arr = np.arange(n, dtype=np.int64) if ids is None else np.ascontiguousarray(ids, dtype=np.int64)
        if id_arr.shape != (n,):
            raise ValueError(f"ids must have shape ({n},), got {tuple(id_arr.shape)}")
        if len(np.unique(id_arr)) != n or (id_arr < 0).any():
            raise ValueError("ids must be unique and non-negative")
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        index.add_with_ids(emb, id_arr)
        return cls(index, embeddings=emb, ids=id_arr)

    def save(self, path: str | Path) -> None:
        """Write the index as a FAISS file (a GPU index is copied back to CPU first)."""
        index = faiss.index_gpu_to_cpu(self._index) if self.on_gpu else self._index
        faiss.write_index(index, str(path))

    @classmethod
    def load(cls, path: str | Path, *, use_gpu: bool = False) -> ItemIndex:
        """Read a FAISS file written by :meth:`save`; ``use_gpu`` moves it to GPU 0 when faiss-gpu is there."""
        path = Path(path)
        if not path.is_file():
            raise IndexFormatError(f"{path}: index file not found")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise IndexFormatError(f"{path}: not a readable FAISS index ({str(exc).splitlines()[0]})") from exc
        if not isinstance(index, faiss.IndexIDMap2):
            raise IndexFormatError(f"{path}: expected IndexIDMap2(IndexFlatIP), got {type(index).__name__}")
        flat = faiss.downcast_index(index.index)
        if not isinstance(flat, faiss.IndexFlatIP):
            raise IndexFormatError(f"{path}: expected an IndexFlatIP inside the id map, got {type(flat).__name__}")
        n, d = int(index.ntotal), int(index.d)
        emb = faiss.vector_to_array(flat.codes).view(np.float32).reshape(n, d).copy()  # (N, D)
        ids = faiss.vector_to_array(index.id_map).astype(np.int64)  # (N,)
        res = None
        if use_gpu:
            if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
                res = faiss.StandardGpuResources()
                index = faiss.index_cpu_to_gpu(res, 0, index)
            else:
                log.warning("use_gpu requested but faiss has no GPU support here; searching on CPU")
        return cls(index, embeddings=emb, ids=ids, gpu_resources=res)

    # properties

    @property
    def ntotal(self) -> int:
        return int(self._ids.shape[0])

    @property
    def dim(self) -> int:
        return int(self._embeddings.shape[1])

    # changes (callers serialise them with searches: the service runs both on the batcher's worker)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Index ``vectors`` (A, D) under new ``ids`` (A,) int64."""
        id_arr = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vec = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(id_arr), self.dim)
        if len(id_arr) == 0:
            return
        if not np.isfinite(vec).all():
            raise ValueError("vectors contain NaN or Inf")
        if len(np.unique(id_arr)) != len(id_arr) or (id_arr < 0).any() or any(int(i) in self._pos for i in id_arr):
            raise ValueError("ids must be new, unique and non-negative")
        self._index.add_with_ids(vec, id_arr)
        start = len(self._ids)
        self._embeddings = np.concatenate([self._embeddings, vec])
        self._ids = np.concatenate([self._ids, id_arr])
        self._pos.update({int(v): start + k for k, v in enumerate(id_arr.tolist())})

    def remove(self, ids: np.ndarray) -> None:
        """Drop ``ids`` from the index (unknown ids are ignored)."""
        gone = {int(i) for i in np.asarray(ids, dtype=np.int64).reshape(-1)} & self._pos.keys()
        if not gone:
            return
        drop = np.fromiter(gone, dtype=np.int64, count=len(gone))
        if self.on_gpu:  # GPU flat indexes cannot remove: rebuild on the device
            keep = ~np.isin(self._ids, drop)
            cpu = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
            cpu.add_with_ids(self._embeddings[keep], self._ids[keep])
            self._index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, cpu)
        else:
            self._index.remove_ids(drop)
        keep = ~np.isin(self._ids, drop)
        self._embeddings, self._ids = self._embeddings[keep], self._ids[keep]
        self._pos = {int(v): i for i, v in enumerate(self._ids.tolist())}

    # search

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exclude: Sequence[Collection[int]] | None = None,
        allow: Sequence[Collection[int] | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query: queries (B, D) -> scores (B, k) float32, ids (B, k) int64, best first.

        ``exclude[b]`` removes ids from row b; ``allow[b]`` (when not None) restricts row b to those
        ids (an empty collection allows nothing). Unknown ids in either are ignored. Exactly k results per row when at least k remain.
        """
        q = _as_queries(queries, self.dim)
        b = q.shape[0]
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        for name, rows in (("exclude", exclude), ("allow", allow)):
            if rows is not None and len(rows) != b:
                raise ValueError(f"{name} must have one entry per query ({b}), got {len(rows)}")
        out_s = np.full((b, k), -np.inf, dtype=np.float32)
        out_i = np.full((b, k), -1, dtype=np.int64)
        if b == 0:
            return out_s, out_i

        excl = [set(exclude[r]) if exclude is not None and exclude[r] else set() for r in range(b)]
        exact_rows = [r for r in range(b) if allow is not None and allow[r] is not None]
        fetch = k + max((len(excl[r]) for r in range(b)), default=0)
        if self.on_gpu and fetch > GPU_MAX_K:
            exact_rows = list(range(b))  # too many to over-fetch on GPU: score everything exactly
        ann_rows = [r for r in range(b) if r not in set(exact_rows)]
        if ann_rows:
            self._search_ann(q, ann_rows, excl, k, min(fetch, self.ntotal), out=(out_s, out_i))
        for r in exact_rows:
            self._search_exact(q[r], allow[r] if allow is not None else None, excl[r], k, out=(out_s[r], out_i[r]))
        return out_s, out_i

    def _search_ann(self, q: np.ndarray, rows: list[int], excl: list[set[int]], k: int, fetch: int, *,
                    out: tuple[np.ndarray, np.ndarray]) -> None:
        """One batched FAISS search for ``rows`` of ``q``, over-fetching past each row's excluded ids."""
        out_s, out_i = out
        s, i = self._index.search(q[rows], fetch)  # (R, fetch)
        for row_pos, r in enumerate(rows):
            ids_r, scores_r = i[row_pos], s[row_pos]
            keep = ids_r >= 0
            if excl[r]:
                keep &= ~np.isin(ids_r, np.fromiter(excl[r], dtype=np.int64, count=len(excl[r])))
            ids_r, scores_r = ids_r[keep][:k], scores_r[keep][:k]
            out_i[r, : len(ids_r)] = ids_r
            out_s[r, : len(ids_r)] = scores_r

    def _search_exact(self, query: np.ndarray, allow: Collection[int] | None, excl: set[int], k: int, *,
                      out: tuple[np.ndarray, np.ndarray]) -> None:
        """Exact scores of one query (D,) over the allowed rows of the embedding matrix (all when None)."""
        cand: Collection[int] = allow if allow is not None else self._pos.keys()
        pos = np.fromiter(
            (p for c in cand if (p := self._pos.get(int(c))) is not None and int(c) not in excl),
            dtype=np.int64,
        )
        pos = np.unique(pos)
        if pos.size == 0:
            return
        scores = self._embeddings[pos] @ query  # (M,)
        s_r, i_r = _topk_rows(scores[None, :], self._ids[pos], k)
        out[0][:], out[1][:] = s_r[0], i_r[0]
