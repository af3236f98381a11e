"""``simgr recommend-batch`` and ``simgr events export``: the offline half of serve -> log -> retrain."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model.config import EventsConfig
from model.errors import SimGRError


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def parse_shard(text: str | None) -> tuple[int, int]:
    """``--shard i/n`` (0 <= i < n); else torchrun's RANK/WORLD_SIZE; else 0/1."""
    if text is None:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise SimGRError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise SimGRError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def _barrier(world: int) -> None:
    """Under torchrun, wait for every rank (gloo needs no GPU)."""
    import torch.distributed as dist

    if world > 1 and "MASTER_ADDR" in os.environ:
        if not dist.is_initialized():
            dist.init_process_group("gloo")
        dist.barrier()


def add_events_flags(s: argparse.ArgumentParser, dataclass_flags: Callable[..., None]) -> None:
    """``prepare --source events`` inputs and column mapping."""
    s.add_argument("--interactions", type=Path, help="events: the log, a file or a directory of part files "
                   "(CSV, TSV, Parquet, JSONL, optionally .gz)")
    s.add_argument("--items", type=Path, help="events: the item table (id, title, text, categories, attributes)")
    dataclass_flags(s, EventsConfig)


def prepare_events_command(a: argparse.Namespace, data: Any, cfg: EventsConfig) -> dict[str, Any]:
    from model.data.prepare_events import prepare_events

    if a.source != "events":
        raise SimGRError("--interactions/--items are for --source events; use --input")
    if a.interactions is None:
        raise SimGRError("--source events needs --interactions FILE|DIR")
    return prepare_events(interactions=a.interactions, items=a.items, out_dir=a.out, cfg=cfg, data=data)


def add_final_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("--final", action="store_true", help="train the deployed model on every interaction, tails "
                   "included, for --from-run's best epoch count (its other settings too)")
    s.add_argument("--from-run", type=Path, help="the validated run that --final takes its settings from")


def final_run_config(a: argparse.Namespace) -> Any:
    """``train --final --from-run RUN [--data DATA]``: the validated run's settings for its best epoch count."""
    import logging

    from model.training.run import final_config

    if not (a.final or a.from_run is not None):
        raise SimGRError("--data is required (or --final --from-run RUN)")
    if not (a.final and a.from_run is not None):
        raise SimGRError("--final and --from-run RUN go together (the run's best epoch count is used)")
    cfg = final_config(a.from_run, a.data)
    logging.getLogger("simgr").info("final model: %d epochs (best of %s) on all interactions of %s",
                                    cfg.train.epochs, a.from_run, cfg.data_dir)
    return cfg


def cmd_recommend_batch(a: argparse.Namespace) -> int:
    from service.batch_histories import load_histories, restrict
    from service.batch_scoring import BatchFilter, BatchJob, score_to_parquet, write_manifest
    from service.model_state import ModelState, default_loader

    if a.k < 1 or a.batch_size < 1 or a.chunk_users < 1:
        raise SimGRError("--k, --batch-size and --chunk-users must be >= 1")
    shard, n_shards = parse_shard(a.shard)
    flt = BatchFilter.parse(a.filter)
    model = default_loader(device=a.device or _device(), encoder="model", noop_sleep_ms=0.0)(a.artifacts)
    state = ModelState.build(model, artifacts=a.artifacts, use_gpu=False)
    hist = load_histories(a.histories, model.item_lookup, cfg=a.events_cfg(a))
    if a.users is not None:
        hist = restrict(hist, a.users)
    if not len(hist):
        raise SimGRError(f"{a.histories}: no users to score")
    job = BatchJob(k=min(a.k, model.n_items), exclude_seen=a.exclude_seen, batch_size=a.batch_size,
                   chunk_users=a.chunk_users, shard=shard, n_shards=n_shards)
    result = score_to_parquet(state, hist, a.out, job=job, flt=flt)
    under_torchrun = a.shard is None and n_shards > 1
    if under_torchrun:
        _barrier(n_shards)
    if not under_torchrun or shard == 0:
        manifest = write_manifest(a.out)
        result["manifest"] = str(a.out / "_manifest.json") if manifest else None
        _emit(result)
    return 0


def cmd_events_export(a: argparse.Namespace) -> int:
    from service.event_export import export_events

    _emit(export_events(out=a.out, redis_url=a.redis, journal=a.journal, prefix=a.prefix, since=a.since))
    return 0


def add_commands(sub: Any, *, dataclass_flags: Callable[..., None], from_args: Callable[..., Any]) -> None:
    """Register the commands; ``dataclass_flags``/``from_args`` are the CLI's config-dataclass flag helpers."""
    s = sub.add_parser("recommend-batch", help="top-k of every user offline, as Parquet (resumable, shardable)")
    s.add_argument("--artifacts", required=True, type=Path, help="export bundle directory")
    s.add_argument("--histories", required=True, type=Path,
                   help="a prepared dataset directory, or an events file/directory (read like prepare --source events)")
    s.add_argument("--out", required=True, type=Path, help="output directory of Parquet parts (e.g. recs.parquet)")
    s.add_argument("--k", type=int, default=100)
    s.add_argument("--users", type=Path, help="score only these users (one id per line)")
    s.add_argument("--exclude-seen", action=argparse.BooleanOptionalAction, default=False,
                   help="never recommend an item of the user's history")
    s.add_argument("--filter", help='JSON {"allow": [item ids], "exclude": [item ids]} for every user')
    s.add_argument("--shard", help="i/n: this process scores chunks c with c %% n == i (default: torchrun rank)")
    s.add_argument("--batch-size", type=int, default=64, help="users per forward pass")
    s.add_argument("--chunk-users", type=int, default=50_000, help="users per part file (resume unit)")
    s.add_argument("--device", help="cpu | cuda[:N] (default: cuda:LOCAL_RANK when available)")
    dataclass_flags(s, EventsConfig)  # how an events file given as --histories is read
    s.set_defaults(func=cmd_recommend_batch, events_cfg=lambda a: from_args(EventsConfig, a))

    s = sub.add_parser("events", help="the service's interaction log")
    events = s.add_subparsers(dest="events_command", required=True)
    e = events.add_parser("export", help="write the interaction log as Parquet in the events source format")
    e.add_argument("--redis", help="Redis URL of the service (stream {prefix}log:events)")
    e.add_argument("--journal", type=Path, help="the journal file instead (SIMGR_STATE_DIR/events.jsonl)")
    e.add_argument("--prefix", default="simgr:", help="the service's SIMGR_EVENT_LOG_PREFIX (default simgr:)")
    e.add_argument("--out", required=True, type=Path, help="events.parquet to write")
    e.add_argument("--since", help="only events at or after this time (epoch seconds or ISO-8601)")
    e.set_defaults(func=cmd_events_export)
