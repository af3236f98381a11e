"""`simgr export`: a run's best checkpoint -> a serving bundle with the chosen, tuned item index."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from model.errors import SimGRError


def emit(obj: dict[str, Any]) -> None:
    """The command's result as ONE JSON line on stdout (its last line)."""
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def cmd_export(a: argparse.Namespace) -> int:
    from index import IndexChoice
    from model.export.export import export_run

    if a.index_factory and a.index not in ("factory", "auto"):
        raise SimGRError(f"--index-factory goes with --index factory, not --index {a.index}")
    if not 0 < a.min_recall <= 1:
        raise SimGRError(f"--min-recall must be in (0, 1], got {a.min_recall}")
    if min(a.max_search, a.recall_queries, a.hnsw_m, a.ef_construction) < 1:
        raise SimGRError("--max-search, --recall-queries, --hnsw-m and --ef-construction must be >= 1")
    kind = "factory" if a.index_factory else a.index
    if kind == "factory" and not a.index_factory:
        raise SimGRError("--index factory needs --index-factory STRING (a FAISS factory string)")
    choice = IndexChoice(kind=kind, factory=a.index_factory, min_recall=a.min_recall,  # type: ignore[arg-type]
                         max_search=a.max_search, hnsw_m=a.hnsw_m, ef_construction=a.ef_construction, nlist=a.nlist)
    emit(export_run(a.run, a.out, check_users=a.check_users, force=a.force, index=choice,
                    recall_queries=a.recall_queries))
    return 0


def add_export_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    s = sub.add_parser("export", help="write the serving bundle of a run (staged beside --out, checked, renamed)")
    s.add_argument("--run", required=True, type=Path)
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--check-users", type=int, default=256, help="users in the index-vs-exact check")
    s.add_argument("--index", default="auto", choices=["flat", "sid-exact", "hnsw", "ivf", "ivfpq", "factory", "auto"],
                   help="item index type; auto: sid-exact for the mean aggregator, else flat / HNSW / IVF-PQ by size")
    s.add_argument("--index-factory", help="a FAISS factory string (implies --index factory)")
    s.add_argument("--min-recall", type=float, default=0.98, help="recall@10 vs exact the tuned index must reach")
    s.add_argument("--max-search", type=int, default=4096, help="largest efSearch / nprobe tried when tuning")
    s.add_argument("--recall-queries", type=int, default=1000, help="validation users the recall is measured on")
    s.add_argument("--hnsw-m", type=int, default=32, help="HNSW graph degree")
    s.add_argument("--ef-construction", type=int, default=200, help="HNSW build beam")
    s.add_argument("--nlist", type=int, help="IVF lists (default about 4 sqrt(N))")
    s.add_argument("--force", action="store_true",
                   help="replace a non-empty --out (still written beside it, checked, then renamed into place)")
    s.set_defaults(func=cmd_export)
