"""Random-init bundles and datasets for tests, benchmarks and the smoke test (no training, no downloads).

    python -m model.synthetic --out DIR [--items 500] [--preset tiny] [--layers 4 --dim 256] [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np

from model.backbone import PRESETS
from model.config import ModelConfig, PromptConfig
from model.export import write_bundle
from model.factory import build_model


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


def make_random_bundle(out_dir: str | Path, *, n_items: int = 500, preset: str = "tiny", seed: int = 0,
                       layers: int | None = None, dim: int | None = None, layout: str = "items") -> Path:
    """Export a random-init SimGR bundle with ``n_items`` items named item-0..item-{n-1}."""
    out = Path(out_dir)
    if layers or dim:  # a custom-size Qwen3 preset, e.g. sized for a serving benchmark
        base = PRESETS[preset]
        d = dim or base.hidden_size
        PRESETS["custom"] = dataclasses.replace(
            base, hidden_size=d, num_hidden_layers=layers or base.num_hidden_layers,
            num_attention_heads=max(1, d // 64), num_key_value_heads=max(1, d // 128), intermediate_size=4 * d)
        preset = "custom"
    sids = random_sids(n_items, seed=seed)
    mcfg, pcfg = ModelConfig(backbone=preset), PromptConfig(layout=layout)  # type: ignore[arg-type]
    built = build_model(mcfg, pcfg, sids, seed=seed)
    item_ids = [f"item-{i}" for i in range(n_items)]
    titles = [f"Item {i}" for i in range(n_items)]
    popularity = np.random.default_rng(seed).permutation(n_items).tolist()
    write_bundle(out, model=built.model, tokenizer=built.tokenizer, item_ids=item_ids, sids=sids,
                 titles=titles, popularity=popularity, extra={"synthetic": True})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--items", type=int, default=500)
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--layers", type=int)
    p.add_argument("--dim", type=int)
    p.add_argument("--layout", default="items", choices=["items", "tokens"])
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = make_random_bundle(a.out, n_items=a.items, preset=a.preset, seed=a.seed, layers=a.layers, dim=a.dim,
                             layout=a.layout)
    sys.stdout.write(json.dumps({"bundle": str(out)}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
