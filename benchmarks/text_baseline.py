"""Text-only baseline (not a test): MiniLM cosine between a user's last item and every other item, full
ranking, every valid and test user of a prepared dataset with item text. No training: what text alone
scores, the floor a trained recommender on this dataset should clear.

    python benchmarks/text_baseline.py --data data/scientific

Prints ONE JSON line: NDCG@10 and HR@10 per split (the evaluator's hit-rank rule; the query item itself
is excluded). The embeddings are the ones `simgr semantic-ids` caches under DATA_DIR/cache.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from model.data.dataset import Dataset


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="prepared dataset with item text")
    p.add_argument("--max-history", type=int, default=20)
    a = p.parse_args()
    from cold_items import text_baseline  # the one text baseline, shared with the cold-items benchmark

    t0 = time.perf_counter()
    full = Dataset.load(a.data)
    out: dict[str, object] = {"dataset": full.info.name, "n_items": full.n_items}
    for split in ("valid", "test"):
        hist, tgt = full.eval_examples(split, max_history=a.max_history)
        out[split] = {**text_baseline(full, hist, tgt, a.data / "cache"), "users": len(tgt)}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    sys.stdout.write(json.dumps(out, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
