"""Popularity baseline (not a test): the ten most interacted-with items of the training part, the same list
for every valid and test user of a prepared dataset. No model: the floor below which a recommender has
learned nothing about the user, only about the items.

    python benchmarks/popularity_baseline.py --data .cache/quality/W/data-spread1024

Prints ONE JSON line: NDCG@10 and HR@10 per split (the evaluator's hit-rank rule). Counts come from each
user's sequence without its valid and test items (``Dataset.popularity``), as SimGR trains on; items the
user has already seen are not removed, as the evaluator does not remove them either. Per split it also
gives the head, torso and tail thirds of the users by their target's count, as ``quality.py`` splits them:
this list's NDCG@10 on each, and each third's target counts as [min, median, max].
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from model.data.dataset import Dataset
from model.evaluation.metrics import hit_ranks, ndcg_by_popularity, popularity_parts


def by_popularity(ranked: np.ndarray, targets: list[int], pop: np.ndarray) -> dict[str, list]:
    """``ranked``'s NDCG@10 on the thirds of the users by target count, and the thirds' counts."""
    t = np.asarray(targets)  # (U,)
    parts = popularity_parts(t, pop)
    counts = [[int(c.min()), int(np.median(c)), int(c.max())] if len(c) else [] for c in (pop[t[p]] for p in parts)]
    ndcgs = ndcg_by_popularity(hit_ranks(ranked, t), t, pop)
    return {"ndcg@10_by_popularity": [round(v, 4) for v in ndcgs], "target_count_by_popularity": counts}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="a prepared dataset (simgr prepare --out)")
    a = p.parse_args()
    from cold_items import metrics  # the evaluator's NDCG@10 / HR@10 over (U, 10) rankings

    data = Dataset.load(a.data)
    pop = data.popularity()  # (N,)
    top10 = np.argsort(-pop, kind="stable")[:10]  # ties: the lower item index first
    out: dict[str, object] = {"dataset": data.info.name, "n_items": data.n_items, "top10": top10.tolist()}
    for split in ("valid", "test"):
        _, targets = data.eval_examples(split)
        ranked = np.broadcast_to(top10, (len(targets), len(top10)))  # (U, 10) the same list for every user
        out[split] = {**metrics(ranked, np.asarray(targets)), "users": len(targets), **by_popularity(ranked, targets, pop)}
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
