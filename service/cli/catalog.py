"""`simgr catalog apply` (changes.jsonl -> new bundle) and `simgr catalog compact` (change log -> new bundle)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from model.errors import SimGRError
from model.export.added import ADDED_LEVELS, AddedEmbedding


def _add_embedding_flags(s: argparse.ArgumentParser) -> None:
    """How added items are embedded: give the values `simgr serve` has in SIMGR_ADDED_ITEM_*."""
    d = AddedEmbedding()
    s.add_argument("--added-item-levels", default=d.levels, choices=list(ADDED_LEVELS))
    s.add_argument("--added-item-gain", type=float, default=d.gain, help="scale of added items' vectors")
    s.add_argument("--added-item-neighbours", type=int, default=d.neighbours,
                   help="k > 0: added items take the vectors of their k nearest trained items (needs a quantizer)")
    s.add_argument("--added-item-neighbour-temperature", type=float, default=d.temperature)


def _embedding(a: argparse.Namespace) -> AddedEmbedding:
    """The flags of _add_embedding_flags as one value (SimGRError on a bad one: exit 2)."""
    return AddedEmbedding(levels=a.added_item_levels, gain=a.added_item_gain, neighbours=a.added_item_neighbours,
                          temperature=a.added_item_neighbour_temperature)


def add_arguments(sub: Any) -> None:
    p = sub.add_parser("catalog", help="apply catalogue changes offline, or fold the change log into a bundle")
    csub = p.add_subparsers(dest="catalog_command", required=True)
    s = csub.add_parser("apply", help="upserts and retirements from a JSON-lines file -> a new bundle")
    s.add_argument("--artifacts", required=True, type=Path, help="the bundle to start from (never edited)")
    s.add_argument("--changes", required=True, type=Path,
                   help='JSON lines: {"op": "upsert", "item": {...}} or {"op": "retire", "item_id": "..."}')
    s.add_argument("--out", required=True, type=Path, help="directory of the new bundle (must not exist)")
    _add_embedding_flags(s)
    s.set_defaults(func=cmd_apply)
    s = csub.add_parser("compact", help="fold the served change log into a new bundle")
    s.add_argument("--artifacts", required=True, type=Path)
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--redis-url", help="the stack's Redis (default: $SIMGR_REDIS_URL)")
    s.add_argument("--state-dir", type=Path, help="journal directory without Redis (default: $SIMGR_STATE_DIR)")
    s.add_argument("--redis-prefix", default=None, help="as `simgr serve --redis-prefix`")
    s.add_argument("--log", dest="catalog_log", default=None, help="change-log name (default: catalog)")
    _add_embedding_flags(s)
    s.set_defaults(func=cmd_compact)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")


def cmd_apply(a: argparse.Namespace) -> int:
    from model.export.bundle import Bundle
    from model.export.catalog_bundle import apply_lines, write_catalog_bundle
    from model.export.items import read_changes
    from model.export.living import CatalogInputError

    embedding = _embedding(a)
    lines = read_changes(a.changes)
    bundle = Bundle.load(a.artifacts)
    try:
        catalog, outcomes = apply_lines(bundle, lines, embedding=embedding)
    except CatalogInputError as exc:
        raise SimGRError(f"{a.changes}: {exc}") from None
    uncoded = [o.item_id for o in outcomes if o.status == "uncoded"]
    if uncoded:
        raise SimGRError(f"{a.changes}: no free uniqueness code for {uncoded[:3]}")
    manifest = write_catalog_bundle(bundle, catalog, a.out, through=bundle.manifest.catalog_through)
    _emit({"bundle": str(a.out), "model_version": manifest.model_version, "n_items": manifest.n_items,
           "changes": dict(Counter(o.status for o in outcomes))})
    return 0


def cmd_compact(a: argparse.Namespace) -> int:
    from model.export.bundle import Bundle
    from model.export.catalog_bundle import write_catalog_bundle
    from service.catalog import change_from_json
    from service.durable_log import LogUnavailable
    from service.settings import Settings

    embedding = _embedding(a)
    overrides = {k: v for k, v in {"redis_url": a.redis_url, "state_dir": a.state_dir, "redis_prefix": a.redis_prefix,
                                   "catalog_log": a.catalog_log}.items() if v is not None}
    settings = Settings(**overrides)
    if not settings.redis_url and not settings.state_dir:
        raise SimGRError("compact needs the change log: --redis-url or --state-dir (or their SIMGR_ variables)")
    bundle = Bundle.load(a.artifacts)
    try:
        entries = asyncio.run(_read_all(settings, bundle.manifest.catalog_through or "0"))
    except LogUnavailable as exc:
        raise SimGRError(f"cannot read the change log: {exc}") from None
    from model.export.living import unique_code

    catalog, through, applied = bundle.catalog, bundle.manifest.catalog_through, 0
    embed = bundle.embedder(embedding)
    for entry in entries:
        through = entry.id
        if entry.record.get("root") != bundle.manifest.root:
            continue
        changes = [change_from_json(c) for c in entry.record.get("changes", [])]
        catalog, _, _ = catalog.apply(changes, unique=unique_code(bundle.space), embed=embed)
        applied += 1
    manifest = write_catalog_bundle(bundle, catalog, a.out, through=through)
    _emit({"bundle": str(a.out), "model_version": manifest.model_version, "n_items": manifest.n_items,
           "entries_folded": applied, "catalog_through": through})
    return 0


async def _read_all(settings: Any, after: str) -> list[Any]:
    from service.durable_log import open_log

    log = open_log(name=settings.catalog_log, redis_url=settings.redis_url, state_dir=settings.state_dir,
                   redis_prefix=settings.redis_prefix)
    out: list[Any] = []
    try:
        while True:
            got = await log.read(after, count=1000)
            if not got:
                return out
            out.extend(got)
            after = got[-1].id
    finally:
        await log.close()
