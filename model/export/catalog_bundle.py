"""Write a new, complete bundle from a bundle and a changed catalogue (``simgr catalog apply`` and
``simgr catalog compact``). The source bundle is never edited: the new one is written next to its
destination under a temporary name and renamed into place.

Only live items are written: a retired item, or the old row of a re-coded one, leaves the bundle.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from index.catalog import Catalog, Change, Outcome, Retire
from index.item_index import ItemIndex
from model.errors import SimGRError
from model.export.added import AddedEmbedding
from model.export.atomic import staged_dir
from model.export.bundle import Bundle
from model.export.export import _hash_files
from model.export.integrity import seal_bundle
from model.export.items import RetireLine, UpsertLine, write_items, write_popularity
from model.export.living import code_upserts, unique_code
from model.export.manifest import BundleManifest

_REWRITTEN = ("items.jsonl", "item_embeddings.npy", "index.json", "index.faiss", "index_sid_codes.npz",
              "popularity.json", "popularity_by_category.json", "manifest.json")


def write_catalog_bundle(bundle: Bundle, catalog: Catalog, out: Path, *, through: str | None) -> BundleManifest:
    """``bundle``'s model with ``catalog`` (live items only) as a new, sealed bundle at ``out`` (staged
    beside it and renamed into place; ``out`` must be new or empty)."""
    src = bundle.root.resolve()
    if out.resolve() == src or src in out.resolve().parents:
        raise SimGRError(f"{out}: the new bundle must not be written into {bundle.root}")
    live = catalog.live_rows()  # ascending
    remap = np.full(len(catalog), -1, dtype=np.int64)
    remap[live] = np.arange(len(live))
    rows = [catalog.row(i) for i in live.tolist()]
    emb = catalog.embeddings[live]  # (N', D)
    with staged_dir(out) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True,
                        ignore=lambda d, names: [n for n in names if Path(d) == src and n in _REWRITTEN])
        write_items(tmp / "items.jsonl", rows)
        index_spec = ItemIndex.build(emb).save(tmp)  # item_embeddings.npy + an exact flat index
        write_popularity(tmp, rows, remap[catalog.popularity].tolist())
        weights = sorted((tmp / "model").rglob("*.safetensors"))
        manifest = bundle.manifest.model_copy(update={
            "model_version": _hash_files([*weights, tmp / "items.jsonl", tmp / "model" / "simgr.json"]),
            "n_items": len(rows), "index": index_spec, "catalog_root": bundle.manifest.root, "catalog_through": through,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": {}})
        manifest.write(tmp / "manifest.json")
        manifest = seal_bundle(tmp, rehash=True)
    return manifest


def apply_lines(bundle: Bundle, lines: Sequence[UpsertLine | RetireLine], *,
                embedding: AddedEmbedding = AddedEmbedding()) -> tuple[Catalog, list[Outcome]]:
    """changes.jsonl lines applied in order to ``bundle``'s catalogue (upserts coded as by PUT /items)."""
    seen: set[str] = set()
    for line in lines:
        iid = line.item.item_id if isinstance(line, UpsertLine) else line.item_id
        if iid in seen:
            raise SimGRError(f"item {iid!r} appears twice in the changes; give each item once")
        seen.add(iid)
    upserts = [ln.item for ln in lines if isinstance(ln, UpsertLine)]
    coded = iter(code_upserts(upserts, bundle.catalog, space=bundle.space, quantizer=bundle.quantizer))
    changes: list[Change] = [next(coded) if isinstance(ln, UpsertLine) else Retire(ln.item_id) for ln in lines]
    catalog, _, outcomes = bundle.catalog.apply(changes, unique=unique_code(bundle.space),
                                                embed=bundle.embedder(embedding))
    return catalog, outcomes
