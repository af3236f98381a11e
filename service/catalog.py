"""Catalogue changes while serving: validate, code, log durably, then apply in log order on every replica.

    PUT /items -> code_upserts (sid or quantizer) -> append ONE log record -> catch up to it -> 200
    follower   -> wait on the log -> apply each record -> swap the served state (Recommender.swap_catalog)

The change log (service/durable_log.py) is the source of truth: the writer applies its own record only
after the append returned, through the same path as a follower, so every replica applies the same records
in the same order and makes the same IDs (the uniqueness code is picked at apply time). A record names the
catalogue root (the exported bundle's version); a replica applies records of its own root past the entry
its bundle already folded in (``catalog_through``), and skips the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from index.catalog import Change, Outcome, Retire, Upsert
from model.errors import SimGRError
from model.export.items import ItemUpsert
from model.export.living import CatalogInputError, code_upserts, unique_code
from model.semantic_ids.space import sid_tokens
from service.durable_log import DurableLog, LogEntry, LogUnavailable, open_log
from service.errors import ServiceError
from service.metrics import Metrics
from service.recommender import Recommender
from service.settings import Settings

log = logging.getLogger(__name__)
_KEEP_OUTCOMES = 256  # outcomes of recent entries, for writers whose entry a follower applied first


def log_key(entry_id: str) -> tuple[int, ...]:
    """Order of log ids: Redis ``"ms-seq"`` or journal line numbers. Example: "17-2" -> (17, 2)"""
    return tuple(int(p) for p in entry_id.split("-"))


def change_to_json(ch: Change) -> dict[str, Any]:
    if isinstance(ch, Retire):
        return {"retire": ch.item_id}
    return {"item_id": ch.item_id, "title": ch.title, "text": ch.text, "categories": list(ch.categories),
            "attributes": dict(ch.attributes), "codes": list(ch.codes) if ch.codes is not None else None,
            "full": ch.full}


def change_from_json(d: dict[str, Any]) -> Change:
    if "retire" in d:
        return Retire(str(d["retire"]))
    return Upsert(d["item_id"], title=d["title"], text=d["text"], categories=tuple(d["categories"]),
                  attributes=tuple(sorted(d["attributes"].items())),
                  codes=tuple(d["codes"]) if d["codes"] is not None else None, full=bool(d["full"]))


class CatalogService:
    def __init__(self, *, rec: Recommender, settings: Settings, metrics: Metrics, log_: DurableLog | None = None) -> None:
        self.rec, self.settings, self.metrics = rec, settings, metrics
        self.log = log_ or (open_log(name=settings.catalog_log, redis_url=settings.redis_url,
                                     state_dir=settings.state_dir, redis_prefix=settings.redis_prefix)
                            if settings.redis_url or settings.state_dir else None)
        self._lock = asyncio.Lock()
        self._after = "0"  # last log entry applied to the served lineage
        self._synced: object = None  # the ItemIndex of the lineage ``_after`` refers to
        self._outcomes: OrderedDict[str, list[Outcome]] = OrderedDict()

    # writing

    def _writable(self) -> Any:
        state = self.rec.require_state()
        model = state.model
        if not hasattr(model, "with_catalog"):
            raise ServiceError("catalog_unsupported", "this encoder serves a fixed catalogue (noop encoder)")
        if self.log is None:
            raise ServiceError("catalog_unavailable",
                               "catalogue changes need a durable log: set SIMGR_REDIS_URL or SIMGR_STATE_DIR")
        return model

    async def upsert(self, records: Sequence[ItemUpsert]) -> tuple[list[Outcome], str]:
        model = self._writable()
        try:
            changes: list[Change] = list(await asyncio.to_thread(
                code_upserts, records, model.catalog, space=model.space, quantizer=model.quantizer))
        except CatalogInputError as exc:
            raise ServiceError("validation", str(exc)) from None
        except SimGRError as exc:  # the bundle's quantizer or the text encoder cannot be loaded here
            raise ServiceError("catalog_unavailable", f"cannot code items: {exc}") from None
        return await self._commit(model, changes)

    async def retire(self, item_id: str) -> Outcome:
        model = self._writable()
        if item_id not in model.item_lookup:
            raise ServiceError("item_not_found", f"no live item {item_id!r}")
        outcomes, _ = await self._commit(model, [Retire(item_id)])
        return outcomes[0]

    def _embedder(self, model: Any) -> Any:
        """How this service embeds added items: SIMGR_ADDED_ITEM_* (the dry run and the replay alike)."""
        return model.embedder(self.settings.added_embedding())

    async def _commit(self, model: Any, changes: list[Change]) -> tuple[list[Outcome], str]:
        """Append one record, then apply the log up to it; a batch that changes nothing is not logged."""
        _, _, dry = model.catalog.apply(changes, unique=unique_code(model.space), embed=self._embedder(model))
        if all(o.status in ("unchanged", "absent") for o in dry):
            return dry, model.model_version
        if any(o.status == "uncoded" for o in dry):
            bad = next(o.item_id for o in dry if o.status == "uncoded")
            raise ServiceError("catalog_full", f"item {bad!r}: no free uniqueness code left under its prefix")
        record = {"root": model.manifest.root, "ts": time.time(), "changes": [change_to_json(c) for c in changes]}
        assert self.log is not None
        try:
            (entry_id,) = await self.log.append([record])
        except LogUnavailable as exc:
            raise ServiceError("catalog_unavailable", f"change not stored, nothing changed: {exc}") from None
        await self.catch_up(until=entry_id)
        outcomes = self._outcomes.get(entry_id)
        if outcomes is None:  # the served bundle changed under us (reload): report what the log holds
            outcomes = dry
        state = self.rec.state
        return outcomes, state.model_version if state else model.model_version

    # applying (writers and the follower)

    async def catch_up(self, *, until: str | None = None) -> int:
        """Apply every pending entry of the served lineage (up to ``until`` at least); returns how many."""
        if self.log is None:
            return 0
        n = 0
        async with self._lock:
            while True:
                state = self.rec.state
                if state is None or not hasattr(state.model, "with_catalog"):
                    return n
                if state.index is not self._synced:  # a new bundle: start from what it folded in
                    model: Any = state.model
                    self._after, self._synced = model.manifest.catalog_through or "0", state.index
                    self.set_counts(model.catalog.counts())
                entries = await self.log.read(self._after, count=200)
                if not entries:
                    self.metrics.catalog_lag.set(0.0)
                    return n
                for entry in entries:
                    await self._apply(state, entry)
                    state = self.rec.state
                    n += 1
                if until is not None and log_key(self._after) >= log_key(until):
                    return n

    async def _apply(self, state: Any, entry: LogEntry) -> None:
        rec = entry.record
        model = state.model
        if rec.get("root") == model.manifest.root:
            changes = [change_from_json(c) for c in rec.get("changes", [])]
            catalog, delta, outcomes = await asyncio.to_thread(
                model.catalog.apply, changes, unique=unique_code(model.space),
                embed=self._embedder(model))
            await self.rec.swap_catalog(state, model.with_catalog(catalog), delta)
            self._remember(entry.id, outcomes)
            for ch in changes:
                self.metrics.catalog_changes.labels(op="retire" if isinstance(ch, Retire) else "upsert").inc()
            self.set_counts(catalog.counts())
            self.metrics.catalog_lag.set(max(0.0, time.time() - float(rec.get("ts", time.time()))))
        self._after = entry.id

    def _remember(self, entry_id: str, outcomes: list[Outcome]) -> None:
        self._outcomes[entry_id] = outcomes
        while len(self._outcomes) > _KEEP_OUTCOMES:
            self._outcomes.popitem(last=False)

    def set_counts(self, counts: dict[str, int]) -> None:
        for origin, n in counts.items():
            self.metrics.catalog_items.labels(origin=origin).set(n)

    async def follow(self) -> None:
        """Forever: apply what other replicas append (blocking read), retrying while the log is down."""
        if self.log is None:
            return
        while True:
            try:
                await self.catch_up()
                await self.log.wait(self._after, timeout_s=0.5, count=1)
            except asyncio.CancelledError:
                raise
            except LogUnavailable as exc:
                log.warning("catalogue log unavailable: %s", exc)
                await asyncio.sleep(self.settings.redis_retry_s or 0.5)
            except Exception:
                log.exception("applying the catalogue log failed")
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        if self.log is not None:
            with contextlib.suppress(Exception):
                await self.log.close()


def outcome_sid(o: Outcome) -> list[str] | None:
    return sid_tokens(o.sid) if o.sid is not None else None
