"""Synthetic datasets and semantic IDs for tests and benchmarks (no downloads): a catalogue walked in order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def random_sids(n_items: int, *, levels: int = 3, codebook: int = 16, seed: int = 0) -> list[list[str]]:
    """n unique semantic IDs: ``levels`` random codes plus a uniqueness counter level."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, codebook, size=(n_items, levels))
    seen: dict[tuple[int, ...], int] = {}
    out = []
    for row in codes.tolist():
        n = seen.get(tuple(row), 0)
        seen[tuple(row)] = n + 1
        out.append([f"<{'abcdefgh'[lvl]}_{c}>" for lvl, c in enumerate([*row, n])])
    return out


def make_synthetic_dataset(out_dir: str | Path, *, n_users: int = 64, n_items: int = 40, min_len: int = 6,
                           max_len: int = 14, max_history: int = 20, seed: int = 0) -> Path:
    """A prepared dataset directory (CONTRACT format) with semantic IDs, where every user walks the
    catalog in order from a random start: item i is always followed by item i+1 (mod n). A model that
    learns the rule predicts every target, so tests can show falling loss and overfitting."""
    out = Path(out_dir)
    (out / "split").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(min_len, max_len + 1))
        seqs.append([(start + j) % n_items for j in range(length)])
    item_ids = [f"i{i}" for i in range(n_items)]
    user_ids = [f"u{u}" for u in range(n_users)]
    cats = ["even", "odd"]
    with open(out / "items.jsonl", "w") as f:
        for i, iid in enumerate(item_ids):
            f.write(json.dumps({"idx": i, "item_id": iid, "title": f"Item {i}", "text": f"Item number {i}",
                                "categories": [cats[i % 2]]}) + "\n")
    with open(out / "sequences.jsonl", "w") as f:
        for uid, s in zip(user_ids, seqs, strict=True):
            f.write(json.dumps({"user_id": uid, "items": s}) + "\n")
    (out / "item_map.json").write_text(json.dumps({iid: i for i, iid in enumerate(item_ids)}))
    (out / "user_map.json").write_text(json.dumps({uid: u for u, uid in enumerate(user_ids)}))
    with open(out / "split" / "train.jsonl", "w") as tr, open(out / "split" / "valid.jsonl", "w") as va, \
            open(out / "split" / "test.jsonl", "w") as te:
        for u, s in enumerate(seqs):
            tr.write(json.dumps({"user": u, "items": s[:-2]}) + "\n")
            va.write(json.dumps({"user": u, "history": s[:-2][-max_history:], "target": s[-2]}) + "\n")
            te.write(json.dumps({"user": u, "history": s[:-1][-max_history:], "target": s[-1]}) + "\n")
    info = {"format_version": 1, "name": "synthetic", "source": "synthetic", "n_users": n_users,
            "n_items": n_items, "n_interactions": sum(map(len, seqs)),
            "n_train_samples": sum(max(len(s) - 3, 0) for s in seqs), "max_history": max_history,
            "has_text": True, "has_categories": True, "has_given_sids": False,
            "avg_seq_len": sum(map(len, seqs)) / n_users}
    (out / "dataset.json").write_text(json.dumps(info, indent=2))
    sids = random_sids(n_items, seed=seed)
    (out / "semantic_ids.json").write_text(json.dumps(dict(zip(item_ids, sids, strict=True))))
    return out
