"""Building index backends, and writing / reading an index directory.

An index directory holds ``item_embeddings.npy`` (the one item matrix, memory-mapped on load), the
index's own file (``index.faiss`` for FAISS types, ``index_sid_codes.npz`` for sid-exact, none for flat), and
``index.json`` (``IndexSpec``). Reading checks the directory against the record the caller expects (the
bundle manifest) and the files against the record, and refuses any mismatch with a clear error.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from pydantic import ValidationError

from index.backends import FaissSearch, FlatSearch, SidSearch
from index.errors import IndexFormatError
from index.sid_exact import SidTrie
from index.spec import (
    FAISS_FILE,
    MATRIX_FILE,
    SID_FILE,
    SPEC_FILE,
    IndexChoice,
    IndexSpec,
    SidCodes,
    factory_string,
)

log = logging.getLogger(__name__)

Backend = FlatSearch | SidSearch | FaissSearch
IDS_FILE, RETIRED_FILE = "index_ids.npy", "index_retired.npy"
DEFAULT_EF_SEARCH, DEFAULT_NPROBE = 64, 16  # until export tunes them
_FAISS_TYPES = {"hnsw": faiss.IndexHNSW, "ivf": faiss.IndexIVFFlat, "ivfpq": faiss.IndexIVFPQ}


def _rerank(factory: str) -> int:
    return 16 if "PQ" in factory or "SQ" in factory else 1  # coarse codes: re-score many more candidates


def _train_faiss(emb: np.ndarray, factory: str, *, ef_construction: int, seed: int) -> Any:
    index = faiss.index_factory(emb.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efConstruction = ef_construction
    if hasattr(inner, "do_polysemous_training"):
        inner.do_polysemous_training = False  # Hamming-filter training we never search with; slow
    if not index.is_trained:
        ivf = faiss.try_extract_index_ivf(index)
        per = 39 * int(ivf.nlist) if ivf is not None else 50_000
        n_train = min(emb.shape[0], max(per, 10_000), 200_000)
        sample = np.random.default_rng(seed).choice(emb.shape[0], n_train, replace=False)
        index.train(np.ascontiguousarray(emb[np.sort(sample)]))
    if isinstance(inner, faiss.IndexIVF):
        inner.add_with_ids(emb, np.arange(emb.shape[0], dtype=np.int64))
    else:
        index.add(emb)
    return index


def build_backend(kind: str, emb: np.ndarray, *, factory: str | None, codes: SidCodes | None,
                  ef_construction: int, seed: int) -> tuple[Backend, IndexSpec]:
    """A backend of ``kind`` over ``emb`` (N, D) and the spec that records it (untuned)."""
    n, d = emb.shape
    if kind == "flat":
        return FlatSearch(emb), IndexSpec(kind="flat", n_items=n, dim=d)
    if kind == "sid-exact":
        assert codes is not None
        trie = SidTrie(codes.tables, codes.codes, codes.inverse_norms())
        return SidSearch(trie, n), IndexSpec(kind="sid-exact", file=SID_FILE, n_items=n, dim=d)
    fs = factory or factory_string(kind, IndexChoice(), n_items=n, dim=d)
    try:
        index = _train_faiss(emb, fs, ef_construction=ef_construction, seed=seed)
    except RuntimeError as exc:
        raise ValueError(f"FAISS cannot build {fs!r}: {str(exc).splitlines()[0]}") from None
    inner = faiss.downcast_index(index)
    ef = DEFAULT_EF_SEARCH if isinstance(inner, faiss.IndexHNSW) else None
    nprobe = DEFAULT_NPROBE if isinstance(inner, faiss.IndexIVF) else None
    spec = IndexSpec(kind=kind, factory=fs, file=FAISS_FILE, n_items=n, dim=d, ef_search=ef,  # type: ignore[arg-type]
                     nprobe=nprobe)
    return FaissSearch(index, kind=kind, ef_search=ef, nprobe=nprobe, rerank=_rerank(fs)), spec


def _maps_file(arr: np.ndarray, path: Path) -> bool:
    """Whether ``arr`` (or an array it is a view of) is a memory map of ``path``."""
    seen: object = arr
    while isinstance(seen, np.ndarray):
        if isinstance(seen, np.memmap) and seen.filename is not None:
            return Path(seen.filename).resolve() == path.resolve()
        seen = seen.base
    return False


def write_index(root: Path, *, backend: Backend, spec: IndexSpec, matrix: np.ndarray, ids: np.ndarray | None,
                codes: SidCodes | None, dead: np.ndarray) -> IndexSpec:
    root.mkdir(parents=True, exist_ok=True)
    target = root / MATRIX_FILE
    if not _maps_file(matrix, target):  # rewriting a file that ``matrix`` maps would pull it from under it
        np.save(target, np.ascontiguousarray(matrix, dtype=np.float32))
    for name, arr in ((IDS_FILE, ids), (RETIRED_FILE, dead if dead.size else None)):
        if arr is not None:
            np.save(root / name, arr.astype(np.int64))
        elif (root / name).exists():
            (root / name).unlink()
    if isinstance(backend, SidSearch):
        assert codes is not None
        arrays: dict[str, np.ndarray] = {f"table_{i}": t for i, t in enumerate(codes.tables)}
        arrays |= {f"tokens_{i}": t for i, t in enumerate(codes.level_tokens)}
        arrays |= {"codes": codes.codes.astype(np.int32), "normalize": np.array(codes.normalize)}
        np.savez(root / SID_FILE, **arrays)  # type: ignore[arg-type]
    elif isinstance(backend, FaissSearch):
        index = faiss.index_gpu_to_cpu(backend.index) if backend.on_gpu else backend.index
        faiss.write_index(index, str(root / FAISS_FILE))
    (root / SPEC_FILE).write_text(spec.model_dump_json(indent=2) + "\n")
    return spec


def _read_spec(root: Path, expect: IndexSpec | None) -> IndexSpec:
    path = root / SPEC_FILE
    if not path.is_file():
        raise IndexFormatError(f"{path}: missing from the bundle; run `simgr export` again to write it")
    try:
        spec = IndexSpec.model_validate_json(path.read_text())
    except (ValidationError, ValueError) as e:
        raise IndexFormatError(f"{path}: not an index record ({str(e).splitlines()[0]})") from None
    if expect is not None and spec.model_dump(exclude={"recall_at_10", "recall_queries"}) != \
            expect.model_dump(exclude={"recall_at_10", "recall_queries"}):
        raise IndexFormatError(f"{path}: the manifest expects a {expect.kind} index "
                               f"({expect.factory or 'no factory'}, {expect.n_items} items), the directory holds a "
                               f"{spec.kind} index ({spec.factory or 'no factory'}, {spec.n_items} items)")
    return spec


def _read_faiss(path: Path, spec: IndexSpec, n_live: int) -> Any:
    if not path.is_file():
        raise IndexFormatError(f"{path}: index file not found")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise IndexFormatError(f"{path}: not a readable FAISS index ({str(exc).splitlines()[0]})") from exc
    inner = faiss.downcast_index(index)
    want = _FAISS_TYPES.get(spec.kind)
    if want is not None and not isinstance(inner, want):
        raise IndexFormatError(f"{path}: the record says {spec.kind}, the file holds a {type(inner).__name__}")
    if index.d != spec.dim or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise IndexFormatError(f"{path}: expected an inner-product index of dimension {spec.dim}")
    if int(index.ntotal) not in (n_live, spec.n_items):  # IVF drops retired rows, others keep them
        raise IndexFormatError(f"{path}: holds {index.ntotal} vectors, the record says {n_live}")
    return index


def _read_codes(path: Path, n: int) -> SidCodes:
    try:
        with np.load(path) as z:
            tables = [z[f"table_{i}"] for i in range(sum(1 for k in z.files if k.startswith("table_")))]
            tokens = [z[f"tokens_{i}"] for i in range(len(tables)) if f"tokens_{i}" in z.files]
            codes = SidCodes(tables=tables, codes=z["codes"], normalize=bool(z["normalize"]), level_tokens=tokens)
    except (OSError, KeyError, ValueError) as e:
        raise IndexFormatError(f"{path}: not a semantic-ID code file ({e})") from None
    if codes.codes.shape != (n, len(tables)):
        raise IndexFormatError(f"{path}: codes of shape {codes.codes.shape}, expected ({n}, {len(tables)})")
    return codes


def read_index(root: Path, *, expect: IndexSpec | None, use_gpu: bool, matrix: np.ndarray | None) -> tuple[
        Backend, IndexSpec, np.ndarray, np.ndarray | None, SidCodes | None, np.ndarray]:
    """Backend, spec, memory-mapped matrix, ids (None: rows), sid codes and retired rows of ``root``."""
    if not root.is_dir():
        raise IndexFormatError(f"{root}: index directory not found")
    spec = _read_spec(root, expect)
    if matrix is None:
        try:
            matrix = np.load(root / MATRIX_FILE, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise IndexFormatError(f"{root / MATRIX_FILE}: cannot read the item matrix ({e})") from None
    n, d = matrix.shape if matrix.ndim == 2 else (0, 0)
    if matrix.dtype != np.float32 or n == 0 or (spec.n_items and (n, d) != (spec.n_items, spec.dim)):
        raise IndexFormatError(f"{root / MATRIX_FILE}: a {matrix.dtype} matrix of shape {matrix.shape}, the "
                               f"record says float32 ({spec.n_items}, {spec.dim})")
    ids = np.load(root / IDS_FILE) if (root / IDS_FILE).is_file() else None
    dead = np.load(root / RETIRED_FILE) if (root / RETIRED_FILE).is_file() else np.empty(0, np.int64)
    codes = None
    backend: Backend
    if spec.kind == "flat":
        backend = FlatSearch(matrix)
    elif spec.kind == "sid-exact":
        codes = _read_codes(root / (spec.file or SID_FILE), n)
        backend = SidSearch(SidTrie(codes.tables, codes.codes, codes.inverse_norms()), n)
    else:
        index = _read_faiss(root / (spec.file or FAISS_FILE), spec, n - int(dead.size))
        res = None
        if use_gpu and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
            res = faiss.StandardGpuResources()  # kept alive by the backend as long as the GPU index
            index = faiss.index_cpu_to_gpu(res, 0, index)
        elif use_gpu:
            log.warning("use_gpu requested but faiss has no GPU support here; searching on CPU")
        backend = FaissSearch(index, kind=spec.kind, ef_search=spec.ef_search, nprobe=spec.nprobe,
                              rerank=_rerank(spec.factory or ""), on_gpu=res is not None)
        backend.resources = res
    return backend, spec, matrix, ids, codes, dead
