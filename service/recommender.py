"""The one owner of the serving pipeline (SimGR, arXiv 2602.07847, section on inference):

    session + request history -> known item indices (last max_history)
      -> batcher -> encode_users (one forward for the whole batch, torch.inference_mode)
      -> ItemIndex.search (one batched search, exclude/allow filters) -> response

Routes call this class and nothing else; it never touches HTTP objects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from index import IndexFormatError
from index.catalog import Delta
from model.errors import SimGRError
from service.batcher import Batcher
from service.canary import in_canary
from service.candidates import dedupe, filtered, popular
from service.durable_log import DurableLog, LogUnavailable
from service.encoder import UserEncoder
from service.errors import ServiceError
from service.metrics import Metrics
from service.model_state import Loader, ModelState
from service.schemas import (
    EventsRequest,
    EventsResponse,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    ReloadResponse,
    RequestTiming,
)
from service.scoring import encode_and_search
from service.sessions import SessionStore, SessionStoreError
from service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class _Job:
    state: ModelState  # the bundle this request started on (reload-safe)
    history: list[int]  # item idx, oldest first, non-empty
    k: int
    exclude: frozenset[int]
    allow: frozenset[int] | None


class _JobResult(NamedTuple):
    scores: np.ndarray  # (k,) float32
    ids: np.ndarray  # (k,) int64, -1 = no more candidates
    inference_s: float
    search_s: float
    state: ModelState  # the catalogue the ids belong to (newer than the job's after a catalogue change)


class Recommender:
    def __init__(self, *, settings: Settings, store: SessionStore, metrics: Metrics, loader: Loader,
                 event_log: DurableLog | None = None) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self._loader = loader
        self._state: ModelState | None = None  # primary: every user not routed to the canary
        self._canary: ModelState | None = None  # optional second bundle (SIMGR_CANARY_*, ROOT/CANARY)
        self._reload_lock = asyncio.Lock()
        self.load_error: str | None = None
        self.event_log: DurableLog | None = event_log
        self.serving_since = 0.0  # unix time the primary state was swapped in
        self.use_gpu = settings.resolved_device().startswith("cuda")
        self.batcher: Batcher[_Job, _JobResult] = Batcher(
            self._process,
            max_batch_size=settings.max_batch_size,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            retry_after_s=settings.retry_after_s,
            metrics=metrics,
        )

    # lifecycle and reload

    @property
    def state(self) -> ModelState | None:
        return self._state

    @property
    def canary(self) -> ModelState | None:
        return self._canary

    def pick_state(self, user_id: str | None, request_id: str) -> ModelState:
        """The canary for its share of users (stable hash of user_id, else request id), else the primary."""
        state = self.require_state()
        canary = self._canary
        if canary is not None and in_canary(user_id or request_id, self.settings.canary_percent):
            return canary
        return state

    def drop_canary(self) -> None:
        if self._canary is not None:
            log.info("canary %s removed", self._canary.model_version)
        self._canary = None
        self._publish_models()

    def _publish_models(self) -> None:
        primary, canary = self._state, self._canary
        self.metrics.set_models(primary.model_version if primary else None,
                                canary.model_version if canary else None, self.settings.canary_percent)

    def require_state(self) -> ModelState:
        state = self._state
        if state is None:
            raise ServiceError("not_ready", "the model is still loading" if self.load_error is None else
                               f"no model loaded: {self.load_error}")
        return state

    async def load(self, artifacts: Path | None, *, canary: bool = False) -> ModelState:
        """Load + index + warm up off the event loop, then swap the served (or canary) state in one assignment."""
        try:
            model = await asyncio.to_thread(self._loader, artifacts)
            state = await asyncio.to_thread(ModelState.build, model, artifacts=artifacts, use_gpu=self.use_gpu)
        except (SimGRError, IndexFormatError, MemoryError, torch.cuda.OutOfMemoryError):
            raise
        except Exception as exc:  # anything else while reading the files is a broken bundle
            raise SimGRError(f"{artifacts}: cannot load the bundle ({type(exc).__name__}: {exc})") from exc
        if self.settings.warmup:
            await self.batcher.run_in_worker(state.warmup, self.settings.max_batch_size)
        if canary:
            self._canary = state
        else:
            self._state = state  # atomic: new requests use it, queued ones keep theirs
            self.load_error, self.serving_since = None, time.time()
        self._publish_models()
        return state

    async def reload(self, artifacts: Path | None, *, canary: bool = False, wait: bool = False) -> ReloadResponse:
        """Load ``artifacts`` (default: re-read the served directory) into a slot; 409 while another
        reload runs unless ``wait``. A bundle that fails to load leaves the served one in place."""
        if self._reload_lock.locked() and not wait:
            raise ServiceError("reload_in_progress", "a reload is already running")
        async with self._reload_lock:
            old = self._canary if canary else self._state
            default = self.settings.canary_artifacts if canary else self.settings.artifacts
            target = artifacts if artifacts is not None else (old.artifacts if old else default)
            t0 = time.perf_counter()
            try:
                new = await self.load(target, canary=canary)
            except (SimGRError, ValueError, OSError) as exc:
                self.metrics.reloads.labels(outcome="rejected").inc()
                log.warning("reload of %s rejected: %s", target, exc)
                serving = old.model_version if old else "nothing"
                raise ServiceError("bad_bundle", f"{exc} (still serving {serving})") from None
            except Exception as exc:
                self.metrics.reloads.labels(outcome="failed").inc()
                log.exception("reload of %s failed", target)
                raise ServiceError("reload_failed", f"loading {target} failed: {type(exc).__name__}") from exc
            self.metrics.reloads.labels(outcome="ok").inc()
            log.info("serving %s (was %s)", new.model_version, old.model_version if old else None)
            return ReloadResponse(
                model_version=new.model_version,
                previous_version=old.model_version if old else None,
                n_items=new.model.n_items,
                seconds=round(time.perf_counter() - t0, 3),
            )

    async def swap_catalog(self, state: ModelState, model: UserEncoder, delta: Delta) -> bool:
        """Apply an index delta and serve ``model``'s catalogue, on the batcher's worker between batches,
        so a forward + search sees all of a batch of changes or none. False when ``state`` is no longer
        served (a reload won; the change log is replayed onto the new bundle)."""

        def swap() -> bool:
            if self._state is not state:
                return False
            state.index.remove(delta.remove_ids.tolist())
            if len(delta.add_ids):
                state.index.add(delta.add_vectors, delta.add_ids)
            self._state = state.with_model(model)
            return True

        return bool(await self.batcher.run_in_worker(swap))

    # sessions

    def session_cap(self, state: ModelState | None = None) -> int:
        state = state or self._state
        if self.settings.session_max_history:
            return self.settings.session_max_history
        return state.model.max_history if state is not None else 1000

    async def add_events(self, req: EventsRequest) -> EventsResponse:
        """Log the events durably (503 when the log refuses), then append the known items to the session."""
        state = self.require_state()
        lookup = state.model.item_lookup
        known = [i for i in req.item_ids if i in lookup]
        unknown = dedupe(i for i in req.item_ids if i not in lookup)
        if self.event_log is not None:
            record = {"user_id": req.user_id, "item_ids": list(req.item_ids), "ts": time.time()}
            try:
                await self.event_log.append([record])
            except LogUnavailable as exc:
                raise ServiceError("event_log_unavailable", f"events not stored: {exc}") from None
        try:
            accepted = await self.store.append(req.user_id, known, max_items=self.session_cap(state))
        except SessionStoreError as exc:
            self.metrics.session_store_errors.inc()
            raise ServiceError("session_store_unavailable", f"events not stored: {exc}") from None
        return EventsResponse(accepted=accepted, unknown_items=unknown)

    async def get_session(self, user_id: str) -> list[str]:
        try:
            return await self.store.get(user_id, max_items=self.session_cap())
        except SessionStoreError as exc:
            self.metrics.session_store_errors.inc()
            raise ServiceError("session_store_unavailable", str(exc)) from None

    async def delete_session(self, user_id: str) -> bool:
        try:
            return await self.store.delete(user_id)
        except SessionStoreError as exc:
            self.metrics.session_store_errors.inc()
            raise ServiceError("session_store_unavailable", str(exc)) from None

    # the pipeline

    async def recommend(self, req: RecommendRequest, *, request_id: str, timing: RequestTiming) -> RecommendResponse:
        state = self.pick_state(req.user_id, request_id)
        timing.model_version = version = state.model_version
        session: list[str] = []
        if req.user_id is not None:
            try:
                session = await self.store.get(req.user_id, max_items=self.session_cap(state))
            except SessionStoreError:
                # degrade to the request's own history; never fail /recommend on the session store
                self.metrics.session_store_errors.inc()
                self.metrics.fallbacks.labels(reason="session_store", model_version=version).inc()
                timing.degraded.append("session-store")
        lookup = state.model.item_lookup
        combined = session + req.history
        history = [lookup[i] for i in combined if i in lookup][-state.model.max_history :]
        exclude = {lookup[i] for i in req.exclude or () if i in lookup}
        if req.exclude_seen:
            exclude.update(history)
        allow = None if req.allow is None else frozenset(lookup[i] for i in req.allow if i in lookup)
        if req.filter is not None:
            allow = filtered(state, req.filter, allow)
        unknown = dedupe(i for i in [*combined, *(req.exclude or ()), *(req.allow or ())] if i not in lookup)

        if not history:
            self.metrics.fallbacks.labels(reason="empty_history", model_version=version).inc()
            ids = popular(state, req.k, exclude, allow)
            items = [RecommendedItem(item_id=state.model.item_ids[i], score=None, rank=r + 1) for r, i in enumerate(ids)]
            fallback: str | None = "popular"
        else:
            job = _Job(state, history, req.k, frozenset(exclude), allow)
            res, queue_s = await self.batcher.submit(job, timeout_s=self.settings.request_timeout_ms / 1000)
            timing.queue_ms, timing.inference_ms, timing.search_ms = queue_s * 1e3, res.inference_s * 1e3, res.search_s * 1e3
            keep = res.ids >= 0
            items = [
                RecommendedItem(item_id=res.state.model.item_ids[int(i)], score=float(s), rank=r + 1)
                for r, (s, i) in enumerate(zip(res.scores[keep], res.ids[keep], strict=True))
            ]
            fallback = None
        return RecommendResponse(
            request_id=request_id,
            model_version=state.model_version,
            items=items,
            history_used=[state.model.item_ids[i] for i in history],
            unknown_items=unknown,
            fallback=fallback,  # type: ignore[arg-type]
        )

    def _process(self, jobs: Sequence[_Job]) -> list[_JobResult]:
        """Worker thread: one forward + one search per bundle present in the batch (normally one)."""
        out: list[_JobResult | None] = [None] * len(jobs)
        groups: dict[int, list[int]] = {}
        for n, job in enumerate(jobs):
            groups.setdefault(id(job.state), []).append(n)
        latest = [st for st in (self._state, self._canary) if st is not None]
        for rows in groups.values():
            state = jobs[rows[0]].state
            # same bundle with a newer catalogue: row indices are append-only, so the job's are still valid
            state = next((st for st in latest if st.index is state.index), state)
            res = encode_and_search(state.model, state.index, [jobs[n].history for n in rows],
                                    k=max(jobs[n].k for n in rows), exclude=[jobs[n].exclude for n in rows],
                                    allow=[jobs[n].allow for n in rows])  # (B, kmax)
            self.metrics.inference_duration.observe(res.inference_s)
            self.metrics.search_duration.observe(res.search_s)
            for r, n in enumerate(rows):
                k = jobs[n].k
                out[n] = _JobResult(res.scores[r, :k], res.ids[r, :k], res.inference_s, res.search_s, state)
        return [r for r in out if r is not None]
