"""What an index directory holds (``index.json``, nested in the bundle manifest) and what builds one.

``IndexSpec`` is the file format: the index type, the FAISS factory string, the tuned search parameter
and the recall@10 it was measured to reach. ``IndexChoice`` is the request at build time (export flags).
``SidCodes`` carries what the SimGR-native exact search needs: each item's codes and each code's
token embedding (mean aggregator only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

IndexKind = Literal["flat", "sid-exact", "hnsw", "ivf", "ivfpq", "factory"]
EXACT_KINDS = ("flat", "sid-exact")
SPEC_FILE = "index.json"
MATRIX_FILE = "item_embeddings.npy"
FAISS_FILE = "index.faiss"
SID_FILE = "index_sid_codes.npz"


class IndexSpec(BaseModel):
    """One index as written: type, parameters, and the recall it was measured to reach."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: IndexKind = "flat"  # flat and sid-exact are exact; the others approximate
    factory: str | None = None  # FAISS factory string of an approximate index
    file: str | None = None  # the index's own file in the directory; None: the item matrix alone
    n_items: int = Field(default=0, ge=0)  # rows indexed when written
    dim: int = Field(default=0, ge=0)  # D of the item matrix
    ef_search: int | None = Field(default=None, gt=0)  # HNSW efSearch used at query time
    nprobe: int | None = Field(default=None, gt=0)  # IVF lists probed at query time
    recall_at_10: float | None = Field(default=None, ge=0, le=1)  # measured against exact search
    recall_queries: int | None = Field(default=None, ge=0)  # queries the recall was measured on


@dataclass(frozen=True, kw_only=True)
class IndexChoice:
    """Which index to build and how hard to tune it (``simgr export --index ...``)."""

    kind: Literal["flat", "sid-exact", "hnsw", "ivf", "ivfpq", "factory", "auto"] = "auto"  # auto: see choose_kind
    factory: str | None = None  # FAISS factory string; required for kind "factory"
    min_recall: float = 0.98  # recall@10 against exact search the tuned setting must reach
    max_search: int = 4096  # largest efSearch / nprobe tried; a cap makes impossible targets fail fast
    hnsw_m: int = 32  # HNSW graph degree: more links, better recall, more memory
    ef_construction: int = 200  # HNSW build beam; the structured SimGR catalogue needs well above 40
    nlist: int | None = None  # IVF lists; None: about 4 sqrt(N)
    pq_m: int | None = None  # IVF-PQ sub-quantizers; None: D/4 (8-bit codes), a 8x compression
    exact_below: int = 200_000  # auto: flat search up to this many items (about 4 ms per query at D=128)
    memory_budget_bytes: int = 8 << 30  # auto: IVF-PQ when the flat matrix would not fit in this
    seed: int = 0  # k-means and HNSW level sampling


@dataclass(frozen=True, eq=False, kw_only=True)
class SidCodes:
    """Codes and code embeddings of the mean aggregator: e_i = norm(mean_l tables[l][codes[i, l]])."""

    tables: list[np.ndarray] = field(default_factory=list)  # L x (K_l, D) float32 token embeddings
    codes: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.int32))  # (N, L) int32
    normalize: bool = True  # whether item embeddings are L2-normalised
    level_tokens: list[np.ndarray] = field(default_factory=list)  # L x (K_l,) vocabulary id of each code

    def encode(self, tokens: np.ndarray) -> np.ndarray:
        """(M, L) vocabulary token ids -> (M, L) codes; ValueError for a token no indexed item used."""
        out = np.empty(tokens.shape, dtype=np.int32)
        for lvl, known in enumerate(self.level_tokens):
            pos = np.minimum(np.searchsorted(known, tokens[:, lvl]), len(known) - 1)
            if (known[pos] != tokens[:, lvl]).any():
                raise ValueError(f"level {lvl}: a code no indexed item uses; rebuild the sid-exact index")
            out[:, lvl] = pos
        return out

    def inverse_norms(self) -> np.ndarray:
        """(N,) float32 inverse norms of the code means (1 when embeddings are not normalised)."""
        n, levels = self.codes.shape
        if not self.normalize:
            return np.ones(n, dtype=np.float32)
        mean = self.tables[0][self.codes[:, 0]].astype(np.float32)
        for lvl in range(1, levels):
            mean += self.tables[lvl][self.codes[:, lvl]]
        mean /= levels
        return (1.0 / np.maximum(np.linalg.norm(mean, axis=1), 1e-12)).astype(np.float32)


def choose_kind(choice: IndexChoice, *, n_items: int, dim: int, mean_aggregator: bool) -> str:
    """``auto``: sid-exact for the mean aggregator; flat for small catalogues, HNSW above, IVF-PQ when
    the float32 matrix would not fit the memory budget."""
    if choice.kind != "auto":
        return choice.kind
    if mean_aggregator:
        return "sid-exact"
    if n_items <= choice.exact_below:
        return "flat"
    if n_items * dim * 4 > choice.memory_budget_bytes:
        return "ivfpq"
    return "hnsw"


def factory_string(kind: str, choice: IndexChoice, *, n_items: int, dim: int) -> str:
    """The FAISS factory string of an approximate kind."""
    if kind == "factory":
        if not choice.factory:
            raise ValueError("--index factory needs --index-factory STRING")
        return choice.factory
    nlist = choice.nlist or max(1, min(n_items // 39, int(4 * np.sqrt(n_items))))
    if kind == "hnsw":
        return f"HNSW{choice.hnsw_m},Flat"
    if kind == "ivf":
        return f"IVF{nlist},Flat"
    if kind == "ivfpq":
        m = choice.pq_m or max(1, dim // 4)
        while dim % m:
            m -= 1
        nbits = min(8, max(2, int(np.log2(max(4, n_items // 4)))))  # k-means needs rows per centroid
        return f"IVF{nlist},PQ{m}x{nbits}"
    raise ValueError(f"{kind!r} is not an approximate index type")
