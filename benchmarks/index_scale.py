"""Index scale benchmark (not a test). Prints ONE JSON line.

    python benchmarks/index_scale.py [--sizes 100000x128,1000000x128,100000x1024]
                                     [--kinds flat,sid-exact,hnsw,ivf,ivfpq,faiss-rq-lut] [--bundle DIR]
                                     [--build-threads 1]

``hnsw`` takes the export defaults (``IndexChoice``: M=32, efConstruction=200); a kind such as
``hnsw-M16-efc40`` sets both, so graph degree and build beam can be measured side by side.

Catalogues have SimGR's structure: every item is the L2-normalised mean of 4 code embeddings drawn from
4 tables of 256 codes (with --bundle: the trained token rows of that bundle's semantic-ID levels), so
items that share three of four codes are near-ties. Queries are user embeddings: with --bundle, the
bundle's model encoding random histories; without, the normalised mean of 5 catalogue items plus noise
(a user lies near what they interacted with). Catalogues, queries, exact top-10 and built FAISS indexes
are cached under .cache/index_scale/ (ignored by git), so a rerun skips the slow builds.

Each index type runs in its own process (one thread: OMP/BLAS = 1) for an honest RSS, through the
served path ``ItemIndex.search`` (candidates + exact re-scoring + filters). Approximate types are tuned
to the cheapest efSearch / nprobe reaching recall@10 >= --min-recall on the first half of the queries
and measured on the other half. ``speedup_vs_flat`` = flat's single-query p50 / this type's, same run.
``faiss-rq-lut`` is FAISS's additive-quantizer look-up-table search (IndexResidualQuantizer) over the
same codes, evaluated as an alternative to sid-exact: it cannot apply the per-item inverse norm.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LEVELS, CODES = 4, 256


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_catalogue(out: Path, n: int, d: int, n_queries: int, bundle: str | None, seed: int = 0) -> Path:
    """Cached catalogue: emb.npy (N, D), codes.npy (N, L), tables.npz, queries.npy, truth.npy."""
    import numpy as np

    if (out / "truth.npy").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if bundle:
        from model.export.bundle import Bundle
        from model.export.indexing import sid_codes

        b = Bundle.load(bundle)
        tables = sid_codes(b.model).tables
        hist = [rng.choice(b.n_items, size=int(rng.integers(3, 20)), replace=False).tolist() for _ in range(n_queries)]
        queries = np.concatenate([b.encode_users(hist[s : s + 64]) for s in range(0, n_queries, 64)])
    else:
        scale = (1.0, 0.8, 0.6, 0.45)
        tables = [(rng.standard_normal((CODES, d)) * scale[lvl]).astype(np.float32) for lvl in range(LEVELS)]
    skew = [1.0 / (np.arange(len(t)) + 8.0) for t in tables]  # popular codes: a skewed, clustered catalogue
    codes = np.stack([rng.choice(len(t), size=int(n * 1.05), p=p / p.sum()) for t, p in zip(tables, skew, strict=True)], 1)
    codes = np.unique(codes, axis=0)[:n]
    codes = codes[rng.permutation(len(codes))].astype(np.int32)
    emb = np.zeros((len(codes), tables[0].shape[1]), dtype=np.float32)
    for lvl, t in enumerate(tables):
        emb += t[codes[:, lvl]]
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    if not bundle:
        hist_rows = emb[rng.integers(0, len(emb), size=(n_queries, 5))].mean(1)
        queries = hist_rows + 0.3 * rng.standard_normal(hist_rows.shape) / np.sqrt(d)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    np.save(out / "emb.npy", emb)
    np.save(out / "codes.npy", codes)
    np.savez(out / "tables.npz", *tables)
    np.save(out / "queries.npy", queries.astype(np.float32))
    from index import ItemIndex

    _, truth = ItemIndex.build(emb).search(queries.astype(np.float32), 10)  # exact, ties to the smaller id
    np.save(out / "truth.npy", truth)
    return out


def _timed(fn: Any, queries: Any, batch: int) -> tuple[float, float, float]:
    import numpy as np

    single = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q[None, :])
        single.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    n_b = 0
    for s in range(0, len(queries) - batch + 1, batch):
        fn(queries[s : s + batch])
        n_b += batch
    qps = n_b / (time.perf_counter() - t0) if n_b else 0.0
    return float(np.percentile(single, 50)) * 1e3, float(np.percentile(single, 99)) * 1e3, qps


def _rq_lut(cat: Path, emb: Any) -> tuple[Any, Any, int]:
    """FAISS IndexResidualQuantizer with LUT search over the same codes (no per-item norm)."""
    import faiss
    import numpy as np

    tables = list(np.load(cat / "tables.npz").values())
    d = emb.shape[1]
    idx = faiss.IndexResidualQuantizer(d, LEVELS, 8, faiss.METRIC_INNER_PRODUCT)
    idx.rq.search_type = faiss.AdditiveQuantizer.ST_LUT_nonorm
    faiss.copy_array_to_vector((np.concatenate(tables) / LEVELS).ravel().astype(np.float32), idx.rq.codebooks)
    idx.rq.is_trained = idx.is_trained = True
    idx.add_sa_codes(np.load(cat / "codes.npy").astype(np.uint8))
    return idx, (lambda q: idx.search(q, 10)[1]), int(idx.sa_code_size() * idx.ntotal)


def _hnsw_variant(kind: str) -> tuple[str, Any]:
    """``hnsw-M16-efc40`` -> ("hnsw", IndexChoice(hnsw_m=16, ef_construction=40)); other kinds as given."""
    from index.spec import IndexChoice

    m = re.fullmatch(r"hnsw-M(\d+)-efc(\d+)", kind)
    if m is None:
        return kind, IndexChoice()
    return "hnsw", IndexChoice(hnsw_m=int(m[1]), ef_construction=int(m[2]))


def _build(kind: str, cat: Path, cache: Path, emb: Any, tune_q: Any, min_recall: float,
           build_threads: int) -> tuple[Any, Any, float, int]:
    import numpy as np

    from index import ItemIndex, SidCodes
    from index.spec import factory_string
    from index.tuning import tune

    t0 = time.perf_counter()
    if kind == "faiss-rq-lut":
        _, fn, nbytes = _rq_lut(cat, emb)
        return None, fn, time.perf_counter() - t0, nbytes
    saved = cache / f"built_{kind}"
    if kind in ("flat", "sid-exact"):
        codes = None
        if kind == "sid-exact":
            codes = SidCodes(tables=list(np.load(cat / "tables.npz").values()), codes=np.load(cat / "codes.npy"))
        index = ItemIndex.build(emb, kind=kind, codes=codes)
        build_s = time.perf_counter() - t0
    elif (saved / "build.json").is_file():
        index = ItemIndex.load(saved, matrix=emb)
        build_s = json.loads((saved / "build.json").read_text())["build_s"]
    else:
        import faiss

        n, d = emb.shape
        base, choice = _hnsw_variant(kind)
        fs = factory_string(base, choice, n_items=n, dim=d)
        faiss.omp_set_num_threads(build_threads)  # searches below stay on one thread
        index = ItemIndex.build(emb, kind=base, factory=fs, ef_construction=choice.ef_construction)
        faiss.omp_set_num_threads(1)
        build_s = time.perf_counter() - t0
        index.save(saved)
        (saved / "build.json").write_text(json.dumps({"build_s": build_s}))
    if not index.exact:
        index = tune(index, tune_q, min_recall=min_recall, max_search=4096)
    nbytes = sum(p.stat().st_size for p in saved.iterdir() if p.name != "item_embeddings.npy") if saved.is_dir() \
        else int(emb.nbytes)
    if kind == "sid-exact":
        trie = index._backend.trie  # codes, order and prefix tables held by the search
        nbytes = int(trie.codes.nbytes + trie.order.nbytes + trie.inv.nbytes
                     + sum(a.nbytes for lv in trie.levels for a in (lv.code, lv.start, lv.child, lv.max_inv, lv.min_inv)))
    return index, (lambda q: index.search(q, 10)[1]), build_s, nbytes


def worker(kind: str, cat: Path, cache: Path, min_recall: float, build_threads: int) -> dict[str, Any]:
    import numpy as np

    from index.tuning import recall_at_k

    emb = np.load(cat / "emb.npy", mmap_mode="r")
    queries, truth = np.load(cat / "queries.npy"), np.load(cat / "truth.npy")
    half = len(queries) // 2
    index, fn, build_s, nbytes = _build(kind, cat, cache, emb, queries[:half], min_recall, build_threads)
    test_q = queries[half:]
    fn(test_q[:4])  # warm
    found = np.concatenate([fn(q[None, :]) for q in test_q])
    p50, p99, qps = _timed(fn, test_q, 32)
    params = {} if index is None else {k: v for k, v in index.spec.model_dump().items()
                                       if k in ("factory", "ef_search", "nprobe") and v is not None}
    return {"index": kind, "n_items": int(emb.shape[0]), "dim": int(emb.shape[1]),
            "recall_at_10": round(recall_at_k(found, truth[half:]), 4), "p50_ms": round(p50, 3),
            "p99_ms": round(p99, 3), "qps_batch32": round(qps, 1), "build_s": round(build_s, 2),
            "index_bytes": nbytes, "rss_bytes": _rss(), "params": params}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--sizes", default="100000x128,1000000x128,100000x1024")
    p.add_argument("--kinds", default="flat,sid-exact,hnsw,ivf,ivfpq,faiss-rq-lut")
    p.add_argument("--bundle", help="a trained bundle: its token rows embed the codes, its model encodes users")
    p.add_argument("--queries", type=int, default=400, help="user embeddings: half tune, half measure")
    p.add_argument("--min-recall", type=float, default=0.98)
    p.add_argument("--build-threads", type=int, default=1, help="FAISS threads while building (search: 1)")
    p.add_argument("--cache", type=Path, default=ROOT / ".cache" / "index_scale")
    p.add_argument("--worker", nargs=2, metavar=("KIND", "CATALOGUE"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        cat = Path(a.worker[1])
        sys.stdout.write(json.dumps(worker(a.worker[0], cat, cat, a.min_recall, a.build_threads)) + "\n")
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    results = []
    for size in a.sizes.split(","):
        n, d = (int(x) for x in size.split("x"))
        tag = f"{n}x{d}" + ("_bundle" if a.bundle else "")
        cat = make_catalogue(a.cache / tag, n, d, a.queries, a.bundle)
        rows = []
        for kind in a.kinds.split(","):
            out = subprocess.run([sys.executable, __file__, "--worker", kind, str(cat), "--min-recall",
                                  str(a.min_recall), "--build-threads", str(a.build_threads)],
                                 env=env, capture_output=True, text=True, check=False)
            if out.returncode:
                rows.append({"index": kind, "n_items": n, "dim": d, "error": out.stderr.strip().splitlines()[-1]})
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        flat = next((r["p50_ms"] for r in rows if r["index"] == "flat" and "p50_ms" in r), None)
        for r in rows:
            r["speedup_vs_flat"] = round(flat / r["p50_ms"], 2) if flat and "p50_ms" in r else None
        results += rows
    sys.stdout.write(json.dumps({"results": results}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
