"""Synthetic datasets and semantic IDs for tests and benchmarks (no downloads): a catalogue walked in order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from model.data.prepare import Indexed, dataset_info, write_dataset
from model.data.sources.records import ItemMeta


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
    """A prepared dataset directory (as ``simgr prepare`` writes it) with semantic IDs, where every user walks the
    catalog in order from a random start: item i is always followed by item i+1 (mod n). A model that
    learns the rule predicts every target, so tests can show falling loss and overfitting."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    seqs = []
    for _ in range(n_users):
        start, length = int(rng.integers(n_items)), int(rng.integers(min_len, max_len + 1))
        seqs.append([(start + j) % n_items for j in range(length)])
    item_ids = [f"i{i}" for i in range(n_items)]
    indexed = Indexed(user_ids=[f"u{u}" for u in range(n_users)], item_ids=item_ids, sequences=seqs)
    cats = ["even", "odd"]
    metas = {iid: ItemMeta(title=f"Item {i}", text=f"Item number {i}", categories=(cats[i % 2],))
             for i, iid in enumerate(item_ids)}
    info = dataset_info(name="synthetic", source="synthetic", indexed=indexed, metas=metas, has_given_sids=False,
                        max_history=max_history)
    write_dataset(out_dir=out, info=info, indexed=indexed, metas=metas, given=None, max_history=max_history)
    sids = random_sids(n_items, seed=seed)
    (out / "semantic_ids.json").write_text(json.dumps(dict(zip(item_ids, sids, strict=True))))
    return out


def dataset_or_synthetic(data: str | Path | None, *, prefix: str) -> Path:
    """``data`` when given, else a fresh synthetic dataset (600 users, 300 items) in a temporary directory:
    what a benchmark runs on without a prepared dataset."""
    import tempfile

    if data is not None:
        return Path(data)
    return make_synthetic_dataset(Path(tempfile.mkdtemp(prefix=prefix)) / "data", n_users=600, n_items=300, seed=0)
