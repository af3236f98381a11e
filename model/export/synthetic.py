"""Random-init bundles for tests, benchmarks and the smoke test (no training, no downloads).

    python -m model.export.synthetic --out DIR [--items 500] [--preset tiny] [--layers 4 --dim 256] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from model.config import ModelConfig, PromptConfig
from model.data.dataset import load_items
from model.data.synthetic import random_sids
from model.export.atomic import staged_dir
from model.export.export import check_bundle, write_bundle
from model.export.integrity import seal_bundle
from model.network.assembly import build_model
from model.network.backbone import PRESETS
from model.semantic_ids.assign import load_semantic_ids, tokens_to_codes
from model.semantic_ids.quantizer import find_quantizer
from model.semantic_ids.space import load_sid_space


def make_random_bundle(out_dir: str | Path, *, n_items: int = 500, preset: str = "tiny", seed: int = 0,
                       layers: int | None = None, dim: int | None = None, layout: str = "items",
                       force: bool = False, data_dir: Path | None = None, index: str = "flat") -> Path:
    """Export a random-init SimGR bundle with ``n_items`` items named item-0..item-{n-1}, staged and
    checked like ``simgr export`` (a non-empty ``out_dir`` needs ``force``); with ``data_dir`` (a dataset
    with semantic IDs), its items, texts, code space and item quantizer instead. ``index`` is any
    ``simgr export --index`` type, tuned on random histories."""
    out = Path(out_dir)
    # layers/dim size the preset, e.g. for a serving benchmark (Preset.resized)
    mcfg = ModelConfig(backbone=preset, layers=layers or 0, width=dim or 0)
    pcfg = PromptConfig(layout=layout)  # type: ignore[arg-type]
    if data_dir is None:
        sids = random_sids(n_items, seed=seed)
        item_ids = [f"item-{i}" for i in range(n_items)]
        titles: list[str | None] = [f"Item {i}" for i in range(n_items)]
        texts: list[str | None] | None = None
        cats: list[tuple[str, ...]] | None = None
        space = None
    else:
        items = load_items(data_dir / "items.jsonl")
        item_ids, titles = [it.item_id for it in items], [it.title for it in items]
        texts, cats = [it.text for it in items], [it.categories for it in items]
        sids = load_semantic_ids(data_dir, item_ids)
        space = load_sid_space(data_dir, tokens_to_codes(sids))
        n_items = len(items)
    built = build_model(mcfg, pcfg, sids, seed=seed, space=space)
    popularity = np.random.default_rng(seed).permutation(n_items).tolist()
    rng = np.random.default_rng(seed)
    checks = [rng.integers(0, n_items, size=int(rng.integers(1, 8))).tolist() for _ in range(4)]
    with staged_dir(out, force=force) as tmp:
        write_bundle(tmp, model=built.model, tokenizer=built.tokenizer, item_ids=item_ids, sids=sids,
                     titles=titles, popularity=popularity, extra={"synthetic": True}, texts=texts, categories=cats,
                     quantizer_dir=find_quantizer(data_dir) if data_dir else None,
                     sid_space=space)
        seal_bundle(tmp)
        if index != "flat":
            _install_index(tmp, index, rng)
        check_bundle(tmp, checks)
    return out


def _install_index(root: Path, kind: str, rng: np.random.Generator) -> None:
    from index import IndexChoice
    from model.export.bundle import Bundle
    from model.export.indexing import install_index

    b = Bundle.load(root)
    hist = [rng.integers(0, b.n_items, size=int(rng.integers(3, 20))).tolist() for _ in range(200)]
    install_index(root, b, IndexChoice(kind=kind), b.encode_users(hist))  # type: ignore[arg-type]
    del b
    seal_bundle(root, rehash=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--items", type=int, default=500)
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--layers", type=int)
    p.add_argument("--dim", type=int)
    p.add_argument("--layout", default="items", choices=["items", "tokens"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.add_argument("--index", default="flat", help="an export --index type (default: flat)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = make_random_bundle(a.out, n_items=a.items, preset=a.preset, seed=a.seed, layers=a.layers, dim=a.dim,
                             layout=a.layout, force=a.force, index=a.index)
    sys.stdout.write(json.dumps({"bundle": str(out)}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
