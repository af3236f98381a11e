"""``simgr prepare``: read a source, map ids, split leave-one-out, write the dataset directory.

Protocol (LC-Rec, SimGR arXiv 2602.07847 Sec. 5.1): for each user the last item is the test target
and the second-to-last the validation target; training uses every prefix of ``items[:-2]``
with the history cut to the last ``max_history`` items. Users with fewer than 3 interactions
cannot be split and are dropped.

Index order (deterministic):
- user idx: the reader's user order among users kept (each reader's docstring says which order);
- item idx: order of first appearance when scanning kept users in idx order, each oldest first.
Items never interacted with by a kept user are not in the dataset.

Layout written (read back by model/data/dataset.py): dataset.json, items.jsonl, sequences.jsonl, item_map.json,
user_map.json, split/{train,valid,test}.jsonl, and given_sids.json when the source ships SIDs.
dataset.json is written last, so a directory without it is an unfinished one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from model.config import DataConfig
from model.data.dataset import MIN_INTERACTIONS, DatasetInfo
from model.data.sources.records import ItemMeta, SourceRecord
from model.data.sources.registry import get_reader
from model.errors import SimGRError

logger = logging.getLogger(__name__)


class Indexed(NamedTuple):
    user_ids: list[str]  # user idx -> original id
    item_ids: list[str]  # item idx -> original id
    sequences: Sequence[list[int]]  # user idx -> item idx, oldest first (a list, or RaggedSequences)


def index_record(record: SourceRecord) -> Indexed:
    """Drop users with < 3 interactions and map ids to dense indices (see module docstring).

    Example: {"u1": ["b", "a", "b"], "u2": ["c"], "u3": ["a", "c", "d"]}
    -> user_ids ["u1", "u3"], item_ids ["b", "a", "c", "d"], sequences [[0, 1, 0], [1, 2, 3]]
    """
    item_index: dict[str, int] = {}
    user_ids: list[str] = []
    sequences: list[list[int]] = []
    for user, items in record.sequences.items():
        if len(items) < MIN_INTERACTIONS:
            continue
        user_ids.append(user)
        sequences.append([item_index.setdefault(item, len(item_index)) for item in items])
    return Indexed(user_ids=user_ids, item_ids=list(item_index), sequences=sequences)


def n_train_samples(sequences: Iterable[list[int]]) -> int:
    """Prefix samples of ``items[:-2]``: one per target position after the first."""
    return sum(max(len(seq) - 3, 0) for seq in sequences)


def dataset_info(*, name: str, source: str, indexed: Indexed, metas: dict[str, ItemMeta], has_given_sids: bool,
                 max_history: int) -> DatasetInfo:
    """The dataset.json summary of an indexed dataset."""
    n_interactions = sum(len(seq) for seq in indexed.sequences)
    return DatasetInfo(
        name=name, source=source, n_users=len(indexed.user_ids), n_items=len(indexed.item_ids),
        n_interactions=n_interactions, n_train_samples=n_train_samples(indexed.sequences),
        max_history=max_history, has_text=any(m.text for m in metas.values()),
        has_categories=any(m.categories for m in metas.values()), has_given_sids=has_given_sids,
        avg_seq_len=round(n_interactions / max(1, len(indexed.user_ids)), 4),
    )


def _given_sids(record: SourceRecord, item_ids: list[str]) -> dict[str, list[str]] | None:
    if record.given_sids is None:
        return None
    missing = [item for item in item_ids if item not in record.given_sids]
    if missing:
        raise SimGRError(
            f"{record.origin}: the given semantic IDs miss {len(missing)} of {len(item_ids)} items "
            f"(e.g. {missing[0]!r})"
        )
    return {item: record.given_sids[item] for item in item_ids}


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_json(path: Path, obj: Any, *, indent: int | None = None) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=indent) + "\n", encoding="utf-8")


def write_dataset(
    *, out_dir: Path, info: DatasetInfo, indexed: Indexed, metas: dict[str, ItemMeta],
    given: dict[str, list[str]] | None, max_history: int,
) -> None:
    """Write the dataset directory (dataset.json last)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SimGRError(f"{out_dir}: exists and is not a directory")
    (out_dir / "split").mkdir(parents=True, exist_ok=True)
    (out_dir / "dataset.json").unlink(missing_ok=True)  # the directory is invalid until we finish

    empty = ItemMeta()
    items = []
    for idx, item_id in enumerate(indexed.item_ids):
        meta = metas.get(item_id, empty)
        row = {"idx": idx, "item_id": item_id, "title": meta.title, "text": meta.text,
               "categories": list(meta.categories)}
        if meta.attributes:
            row["attributes"] = meta.attributes
        items.append(row)
    _write_jsonl(out_dir / "items.jsonl", items)
    pairs = zip(indexed.user_ids, indexed.sequences, strict=True)
    _write_jsonl(out_dir / "sequences.jsonl", ({"user_id": u, "items": s} for u, s in pairs))
    _write_json(out_dir / "item_map.json", {item: idx for idx, item in enumerate(indexed.item_ids)})
    _write_json(out_dir / "user_map.json", {user: idx for idx, user in enumerate(indexed.user_ids)})

    seqs = indexed.sequences  # iterated once per file: a RaggedSequences never materialises every list
    _write_jsonl(out_dir / "split" / "train.jsonl", ({"user": u, "items": s[:-2]} for u, s in enumerate(seqs)))
    _write_jsonl(out_dir / "split" / "valid.jsonl", ({"user": u, "history": s[:-2][-max_history:],
                                                      "target": s[-2]} for u, s in enumerate(seqs)))
    _write_jsonl(out_dir / "split" / "test.jsonl", ({"user": u, "history": s[:-1][-max_history:],
                                                     "target": s[-1]} for u, s in enumerate(seqs)))

    sids_path = out_dir / "given_sids.json"
    if given is not None:
        _write_json(sids_path, given)
    elif sids_path.exists():
        sids_path.unlink()  # stale from an earlier prepare of another source
    for stale in ("semantic_ids.json", "semantic_ids_report.json"):
        if (out_dir / stale).exists():
            logger.warning("%s: left from an earlier run; rebuild it if the items changed", out_dir / stale)
    _write_json(out_dir / "dataset.json", info.model_dump(exclude_none=True), indent=2)  # no null events keys


def prepare_dataset(
    *, source: str, input_path: Path | None, out_dir: Path, cfg: DataConfig = DataConfig()
) -> dict[str, Any]:
    """Read ``source`` from ``input_path``, write DATA_DIR ``out_dir``; returns the dataset.json summary."""
    start = time.perf_counter()
    if cfg.max_history < 1:
        raise SimGRError(f"max_history must be >= 1, got {cfg.max_history}")
    reader = get_reader(source)
    record = reader(input_path=Path(input_path) if input_path is not None else None, cfg=cfg)
    indexed = index_record(record)
    if not indexed.user_ids:
        raise SimGRError(
            f"{record.origin}: no user has >= {MIN_INTERACTIONS} interactions after filtering "
            f"({len(record.sequences)} users read); nothing to prepare"
        )
    metas = {item: record.items[item] for item in indexed.item_ids if item in record.items}
    if record.items and len(metas) < len(indexed.item_ids):
        logger.warning("%s: %d of %d items have no metadata", record.origin,
                       len(indexed.item_ids) - len(metas), len(indexed.item_ids))
    given = _given_sids(record, indexed.item_ids)

    info = dataset_info(name=record.name, source=source, indexed=indexed, metas=metas,
                        has_given_sids=given is not None, max_history=cfg.max_history)
    dropped = len(record.sequences) - len(indexed.user_ids)
    if dropped:
        logger.info("dropped %d users with < %d interactions", dropped, MIN_INTERACTIONS)
    write_dataset(out_dir=Path(out_dir), info=info, indexed=indexed, metas=metas, given=given,
                  max_history=cfg.max_history)
    logger.info("prepared %s (%s) in %.1f s: %d users, %d items, %d interactions, %d train samples -> %s",
                record.name, source, time.perf_counter() - start, info.n_users, info.n_items,
                info.n_interactions, info.n_train_samples, out_dir)
    return info.model_dump(exclude_none=True)
