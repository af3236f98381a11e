"""Top-K inner-product search over item embeddings, with per-query allow/deny filters and catalogue changes.

Serving scores a user embedding h against every item e_i with <h, e_i> (SimGR, arXiv 2602.07847) and
takes the top K. One ``ItemIndex`` answers that for every index type (``index.spec.IndexKind``):

1. a backend (``index.backends``) proposes candidate rows: all of them (flat), the code-trie survivors
   (sid-exact) or an approximate FAISS index's neighbours (hnsw, ivf, ivfpq, factory);
2. every candidate is re-scored against the one stored item matrix, float32(<h, e_i> in float64), so
   all types agree on the score of an item; ties at equal score go to the smaller id.

Filters never make a row come back short while enough candidates remain: ``exclude`` and retired
items are filtered inside the backend (``IDSelector`` on CPU FAISS indexes, over-fetch otherwise), and
``allow`` scores exactly the allowed rows. Items added after the build live in a small exact segment
searched by brute force; ``save`` folds them in. Rows with fewer than ``k`` candidates are padded with
id -1 and score -inf. Not thread-safe: call it from one worker, as ``service/batcher.py`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from index.backends import GPU_MAX_K, PAD, FaissSearch, FlatSearch
from index.spec import EXACT_KINDS, IndexSpec, SidCodes
from index.storage import Backend, build_backend, read_index, write_index

log = logging.getLogger(__name__)


def _as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must have shape (B, {dim}), got {tuple(q.shape)}")
    if not np.isfinite(q).all():
        raise ValueError("queries contain NaN or Inf")
    return q


def _check_matrix(embeddings: np.ndarray) -> np.ndarray:
    emb = embeddings if embeddings.dtype == np.float32 and embeddings.flags.c_contiguous else \
        np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
        raise ValueError(f"embeddings must be a non-empty (N, D) array, got shape {tuple(emb.shape)}")
    if not np.isfinite(emb).all():
        raise ValueError("embeddings contain NaN or Inf")
    return emb


def exact_topk(queries: np.ndarray, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Numpy reference: top-k rows of ``embeddings`` by inner product with each query.

    queries (B, D), embeddings (N, D) -> scores (B, k) float32, ids (B, k) int64 (row positions),
    best first, ties to the smaller row; padded with -inf / -1 when k > N."""
    q = np.asarray(queries, dtype=np.float32).astype(np.float64)
    scores = (q @ np.asarray(embeddings, dtype=np.float32).astype(np.float64).T).astype(np.float32)  # (B, N)
    out_s = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
    out_i = np.full((q.shape[0], k), -1, dtype=np.int64)
    for b in range(q.shape[0]):
        s, i = _rank(scores[b], np.arange(scores.shape[1], dtype=np.int64), k)
        out_s[b, : len(i)], out_i[b, : len(i)] = s, i
    return out_s, out_i


def _rank(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best k of (scores, ids): score descending, then id ascending."""
    order = np.lexsort((ids, -scores))[:k]
    return scores[order], ids[order]


class ItemIndex:
    """Top-K inner-product search over one item matrix, answered the same way by every index type."""

    def __init__(self, backend: Backend, *, matrix: np.ndarray, ids: np.ndarray | None = None,
                 spec: IndexSpec, codes: SidCodes | None = None) -> None:
        self._backend = backend
        self.spec = spec
        self._matrix = matrix  # (N, D) float32 rows the backend was built on (often a read-only memmap)
        self._extra = np.empty((0, matrix.shape[1]), dtype=np.float32)  # (M, D) rows added since
        self._codes_complete = True  # every added row came with its codes (sid-exact can be saved)
        self._codes = codes  # sid-exact only: codes of the matrix rows, extended by ``add``
        n = matrix.shape[0]
        self._ids = np.arange(n, dtype=np.int64) if ids is None else ids  # (N + M,) row -> id
        self._identity = ids is None or bool((ids == np.arange(n)).all())
        self._sorted_ids, self._sorted_rows = self._id_lookup(self._ids)
        self._dead = np.empty(0, dtype=np.int64)  # retired rows, sorted
        self.on_gpu = bool(getattr(backend, "on_gpu", False))

    @staticmethod
    def _id_lookup(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(ids, kind="stable")
        return ids[order], order

    # construction / persistence

    @classmethod
    def build(cls, embeddings: np.ndarray, *, ids: np.ndarray | None = None, kind: str = "flat",
              factory: str | None = None, codes: SidCodes | None = None, ef_construction: int = 200,
              seed: int = 0) -> ItemIndex:
        """Index ``embeddings`` (N, D) under ``ids`` (N,) int64 (default 0..N-1) as ``kind``."""
        emb = _check_matrix(embeddings)
        n = emb.shape[0]
        id_arr = None if ids is None else np.ascontiguousarray(ids, dtype=np.int64)
        if id_arr is not None:
            if id_arr.shape != (n,):
                raise ValueError(f"ids must have shape ({n},), got {tuple(id_arr.shape)}")
            if len(np.unique(id_arr)) != n or (id_arr < 0).any():
                raise ValueError("ids must be unique and non-negative")
        if kind == "sid-exact" and (codes is None or codes.codes.shape[0] != n):
            raise ValueError("sid-exact needs the (N, L) semantic-ID codes of every item (mean aggregator)")
        backend, spec = build_backend(kind, emb, factory=factory, codes=codes, ef_construction=ef_construction,
                                      seed=seed)
        return cls(backend, matrix=emb, ids=id_arr, spec=spec, codes=codes)

    def save(self, directory: str | Path) -> IndexSpec:
        """Write the matrix, the index's own file and ``index.json`` into ``directory``; returns the spec.

        Items added or retired since the build are folded in first (the index is rebuilt)."""
        index = self._compacted()
        return write_index(Path(directory), backend=index._backend, spec=index.spec, matrix=index._matrix,
                           ids=None if index._identity else index._ids, codes=index._codes, dead=index._dead)

    @classmethod
    def load(cls, directory: str | Path, *, expect: IndexSpec | None = None, matrix: np.ndarray | None = None,
             use_gpu: bool = False) -> ItemIndex:
        """Read a directory written by :meth:`save` (the matrix is memory-mapped, not copied).

        ``expect`` (the bundle manifest's record) must match what the directory holds, else IndexFormatError.
        ``matrix``: the caller's own map of ``item_embeddings.npy``, shared instead of mapping it twice."""
        backend, spec, matrix, ids, codes, dead = read_index(Path(directory), expect=expect, use_gpu=use_gpu,
                                                             matrix=matrix)
        index = cls(backend, matrix=matrix, ids=ids, spec=spec, codes=codes)
        index._dead = dead
        return index

    def with_search(self, *, ef_search: int | None = None, nprobe: int | None = None) -> ItemIndex:
        """The same index searching with another efSearch / nprobe (approximate types only)."""
        if not isinstance(self._backend, FaissSearch):
            raise ValueError(f"a {self.spec.kind} index has no search parameter")
        other = object.__new__(ItemIndex)
        other.__dict__.update(self.__dict__)
        other._backend = self._backend.with_params(ef_search=ef_search, nprobe=nprobe)
        other.spec = self.spec.model_copy(update={"ef_search": other._backend.ef_search,
                                                  "nprobe": other._backend.nprobe})
        return other

    def with_recall(self, recall: float, n_queries: int) -> ItemIndex:
        other = object.__new__(ItemIndex)
        other.__dict__.update(self.__dict__)
        other.spec = self.spec.model_copy(update={"recall_at_10": recall, "recall_queries": n_queries})
        return other

    # properties

    @property
    def ntotal(self) -> int:
        return int(self._ids.shape[0])

    @property
    def dim(self) -> int:
        return int(self._matrix.shape[1])

    @property
    def matrix(self) -> np.ndarray:
        """(N, D) the rows the index was built on (a read-only memory map once loaded)."""
        return self._matrix

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    @property
    def identity_ids(self) -> bool:
        return self._identity

    @property
    def faiss_index(self) -> object | None:
        return self._backend.index if isinstance(self._backend, FaissSearch) else None

    @property
    def exact(self) -> bool:
        return self.spec.kind in EXACT_KINDS

    @property
    def n_retired(self) -> int:
        return int(self._dead.size)

    def rows_of(self, ids: Collection[int]) -> np.ndarray:
        """Row positions of the known ids among ``ids`` (unknown ids are dropped)."""
        arr = np.fromiter((int(i) for i in ids), dtype=np.int64, count=len(ids))
        if self._identity and self._ids.shape[0] == self._matrix.shape[0] + self._extra.shape[0]:
            return arr[(arr >= 0) & (arr < self._ids.shape[0])]
        pos = np.searchsorted(self._sorted_ids, arr)
        pos = np.minimum(pos, len(self._sorted_ids) - 1)
        hit = self._sorted_ids[pos] == arr
        return self._sorted_rows[pos[hit]]

    # catalogue changes

    def add(self, embeddings: np.ndarray, ids: np.ndarray, *, codes: np.ndarray | None = None) -> None:
        """Add rows (M, D) under new ``ids`` (M,); sid-exact also takes their (M, L) codes."""
        emb = _check_matrix(embeddings)
        new_ids = np.ascontiguousarray(ids, dtype=np.int64)
        if emb.shape[1] != self.dim or new_ids.shape != (emb.shape[0],):
            raise ValueError(f"add needs (M, {self.dim}) embeddings and (M,) ids")
        if len(np.unique(new_ids)) != len(new_ids) or self.rows_of(new_ids.tolist()).size or (new_ids < 0).any():
            raise ValueError("added ids must be new, unique and non-negative")
        if self._codes is not None and codes is None:  # searched exactly in the side segment; not savable
            self._codes_complete = False
        elif self._codes is not None and codes is not None:
            if codes.shape != (emb.shape[0], self._codes.codes.shape[1]):
                raise ValueError("a sid-exact index needs the (M, L) codes of added items")
            self._codes = SidCodes(tables=self._codes.tables, normalize=self._codes.normalize,
                                   level_tokens=self._codes.level_tokens,
                                   codes=np.concatenate([self._codes.codes, codes.astype(np.int32)]))
        self._extra = np.concatenate([self._extra, emb])
        self._ids = np.concatenate([self._ids, new_ids])
        self._identity = self._identity and bool((new_ids == np.arange(self.ntotal - len(new_ids), self.ntotal)).all())
        self._sorted_ids, self._sorted_rows = self._id_lookup(self._ids)

    def remove(self, ids: Collection[int]) -> int:
        """Retire items: they never come back from a search. Returns how many were live."""
        rows = np.setdiff1d(self.rows_of(ids), self._dead)
        if rows.size:
            self._dead = np.union1d(self._dead, rows)
            base = rows[rows < self._matrix.shape[0]]
            if isinstance(self._backend, FaissSearch) and base.size:
                self._backend.remove(base)
        return int(rows.size)

    def _compacted(self) -> ItemIndex:
        if not self._extra.shape[0]:
            return self
        if not self._codes_complete:
            raise ValueError("items were added to this sid-exact index without codes; rebuild it from the bundle")
        matrix = np.concatenate([self._matrix, self._extra])
        index = ItemIndex.build(matrix, ids=None if self._identity else self._ids, kind=self.spec.kind,
                                factory=self.spec.factory, codes=self._codes)
        index.spec = index.spec.model_copy(update={"ef_search": self.spec.ef_search, "nprobe": self.spec.nprobe})
        if isinstance(index._backend, FaissSearch):
            index._backend = index._backend.with_params(ef_search=self.spec.ef_search, nprobe=self.spec.nprobe)
        index.remove(self._ids[self._dead].tolist())
        return index

    # search

    def search(self, queries: np.ndarray, k: int, *, exclude: Sequence[Collection[int]] | None = None,
               allow: Sequence[Collection[int] | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query: queries (B, D) -> scores (B, k) float32, ids (B, k) int64, best first.

        ``exclude[b]`` removes ids from row b; ``allow[b]`` (when not None) restricts row b to those ids
        (an empty collection allows nothing). Unknown ids in either are ignored. Exactly k results per
        row when at least k remain."""
        q = _as_queries(queries, self.dim)
        b = q.shape[0]
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        for name, given in (("exclude", exclude), ("allow", allow)):
            if given is not None and len(given) != b:
                raise ValueError(f"{name} must have one entry per query ({b}), got {len(given)}")
        out_s = np.full((b, k), -np.inf, dtype=np.float32)
        out_i = np.full((b, k), -1, dtype=np.int64)
        excl = [self.rows_of(exclude[r]) if exclude is not None and exclude[r] else np.empty(0, np.int64)
                for r in range(b)]
        free = [r for r in range(b) if allow is None or allow[r] is None]
        cands: dict[int, np.ndarray] = {}
        if free:
            base_excl = [excl[r][excl[r] < self._matrix.shape[0]] for r in free]
            dead = self._dead[self._dead < self._matrix.shape[0]]
            backend: Backend = self._backend
            if self.on_gpu and k * 16 + PAD + max(len(e) for e in base_excl) + dead.size > GPU_MAX_K:
                backend = FlatSearch(self._matrix)  # more than faiss GPU can select: exact, on CPU
            found = backend.candidates(q[free], k, base_excl, dead if dead.size else None)
            extra = self._extra_rows()
            for r, got in zip(free, found, strict=True):
                cands[r] = np.concatenate([got, np.setdiff1d(extra, excl[r])]) if extra.size else got
        for r in range(b):
            if r not in cands:
                assert allow is not None
                row_allow = allow[r]
                cands[r] = np.setdiff1d(self.rows_of(row_allow or ()), np.union1d(excl[r], self._dead))
            s, i = _rank(self._score(q[r], cands[r]), self._ids[cands[r]], k)
            out_s[r, : len(i)], out_i[r, : len(i)] = s, i
        return out_s, out_i

    def _extra_rows(self) -> np.ndarray:
        n0 = self._matrix.shape[0]
        rows = np.arange(n0, n0 + self._extra.shape[0], dtype=np.int64)
        return np.setdiff1d(rows, self._dead) if self._dead.size else rows

    def _score(self, h: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Exact scores of ``rows`` (M,): float32(<h, e_row>) accumulated in float64."""
        n0 = self._matrix.shape[0]
        base = rows < n0
        vec = np.empty((rows.shape[0], self.dim), dtype=np.float32)
        vec[base] = self._matrix[rows[base]]
        vec[~base] = self._extra[rows[~base] - n0]
        return (vec.astype(np.float64) @ h.astype(np.float64)).astype(np.float32)  # (M,)
