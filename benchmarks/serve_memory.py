"""Resident memory of a served bundle (not a test). Prints ONE JSON line.

    python benchmarks/serve_memory.py [--items 1000000] [--dim 128] [--index flat|sid-exact]

Exports a random-init bundle (2 layers, d=--dim) with --items items, then in a fresh process: RSS after
the imports (the interpreter baseline: torch, faiss and the transformers modeling code every bundle load
imports, whatever the catalogue's size), after loading the bundle and its index exactly as the server does
(``ModelState.build`` + warm-up), and during a reload (a second state built while the first is alive).
Reports each against matrix bytes + model bytes + baseline; the target is <= 1.3x for the served state.
``catalog_bytes`` is the columnar catalogue, the (N, L) token table and the popularity order;
``reload_over_served_state`` is what a reload adds over the served process, in units of one served state
(matrix + model + catalogue): 1.0 means exactly one more copy while both are held. The reload maps the same
file twice, which RSS counts twice, as it would two bundle versions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(bundle: Path, index: str) -> dict[str, Any]:
    import faiss  # noqa: F401
    import numpy as np
    import torch
    import transformers.modeling_utils  # noqa: F401  (code the first bundle load imports lazily, ~120 MB)
    from transformers import AutoModel, AutoTokenizer  # noqa: F401

    from model.export.bundle import Bundle
    from service.model_state import ModelState

    torch.set_num_threads(1)
    base = _rss()
    model = Bundle.load(bundle)
    state = ModelState.build(model, artifacts=bundle)
    state.warmup(8)
    q = model.encode_users([[1, 2, 3]] * 4)
    for _ in range(3):
        state.index.search(q, 10, exclude=[{1, 2, 3}] * 4)
    served = _rss()
    model_bytes = sum(p.numel() * p.element_size() for p in model.model.parameters())
    matrix_bytes = int(np.prod(model.embeddings.shape)) * 4
    catalog_bytes = model.catalog.base.nbytes + model.vocab.sid_token_ids.nbytes + model.catalog.popularity.nbytes
    second = ModelState.build(Bundle.load(bundle), artifacts=bundle)
    second.warmup(8)
    reload_peak = _rss()
    budget = matrix_bytes + model_bytes + base
    return {"items": model.n_items, "dim": model.dim, "index": state.index.spec.kind, "baseline_rss": base,
            "matrix_bytes": matrix_bytes, "model_bytes": model_bytes, "catalog_bytes": catalog_bytes, "served_rss": served,
            "reload_rss": reload_peak, "served_ratio": round(served / budget, 3),
            "reload_matrix_copies": round((reload_peak - base - 2 * model_bytes) / matrix_bytes, 2),
            "reload_over_served_state": round((reload_peak - served) / (matrix_bytes + model_bytes + catalog_bytes), 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--index", default="flat", choices=["flat", "sid-exact"])
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        sys.stdout.write(json.dumps(worker(a.worker, a.index)) + "\n")
        return 0
    from model.export.synthetic import make_random_bundle

    with tempfile.TemporaryDirectory(prefix="simgr_mem_") as tmp:
        bundle = make_random_bundle(Path(tmp) / "b", n_items=a.items, layers=2, dim=a.dim, seed=0, index=a.index)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "SIMGR_NO_PROGRESS": "1"}
        out = subprocess.run([sys.executable, __file__, "--worker", str(bundle), "--index", a.index], env=env,
                             capture_output=True, text=True, check=False)
        if out.returncode:
            sys.stderr.write(out.stderr)
            return 1
        sys.stdout.write(out.stdout.strip().splitlines()[-1] + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
