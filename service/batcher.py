"""Dynamic batcher: concurrent requests -> one batched call in ONE worker thread.

Like Ray Serve's ``@serve.batch`` / infinity's batch handler: a batch is flushed when it holds
``max_batch_size`` items or when its oldest item has waited ``max_wait_ms``. While the worker
computes, new items pile up and form the next batch at once, so under load batches fill without
waiting. The queue is bounded (``max_queue``): a full queue answers 429 with Retry-After. Each item
has a deadline; the waiter gives up with 503 "timeout" and its item is dropped before compute.

The single worker thread is where the model and the FAISS index run (GPU indexes are not
thread-safe, faiss wiki "Threads and asynchronous calls"); ``run_in_worker`` puts warm-ups and
other model work on the same thread.

Time comes from an injected :class:`~service.clock.Clock` (wall time by default), so tests drive the
flush timer and the deadlines with a manual clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from service.clock import MONOTONIC, Clock
from service.errors import ServiceError
from service.metrics import Metrics

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")


@dataclass(eq=False)
class _Job(Generic[P, R]):
    payload: P
    future: asyncio.Future[R]
    enqueued: float  # clock.now() at submit
    deadline: float  # give up after this
    queue_s: float = field(default=0.0)  # set when the batch starts


class Batcher(Generic[P, R]):
    """``await submit(payload)`` -> ``process([payloads])[i]``, computed in batches on one thread."""

    def __init__(
        self,
        process: Callable[[Sequence[P]], Sequence[R]],
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        retry_after_s: int = 1,
        metrics: Metrics | None = None,
        clock: Clock = MONOTONIC,
    ) -> None:
        self._process = process
        self._clock = clock
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self._metrics = metrics
        self._items: deque[_Job[P, R]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._stopping = False
        self.batches = 0  # batches run (for tests and /info)

    # lifecycle

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simgr-model")
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="simgr-batcher")

    async def stop(self) -> None:
        """Finish every queued item, then stop the worker."""
        self._stopping = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    @property
    def queue_size(self) -> int:
        return len(self._items)

    # API

    async def submit(self, payload: P, *, timeout_s: float) -> tuple[R, float]:
        """The result for ``payload`` and the seconds it spent queued."""
        if self._task is None or self._stopping or self._wakeup is None:
            raise ServiceError("not_ready", "the batcher is not running")
        if len(self._items) >= self.max_queue:
            raise ServiceError(
                "overloaded",
                f"queue full ({self.max_queue} waiting); retry later",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        now = self._clock.now()
        job: _Job[P, R] = _Job(payload, asyncio.get_running_loop().create_future(), now, now + timeout_s)
        self._items.append(job)
        self._set_queue_gauge()
        self._wakeup.set()
        try:
            # on timeout wait_for cancels the future; the loop then drops the job unprocessed
            result = await self._clock.wait_for(job.future, timeout_s)
        except TimeoutError:
            raise ServiceError("timeout", f"no result within {timeout_s * 1000:.0f} ms") from None
        return result, job.queue_s

    async def run_in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the model thread, between batches (warm-up, reload checks)."""
        if self._executor is None:
            raise RuntimeError("batcher not started")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # internals

    def _set_queue_gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.queue_size.set(len(self._items))

    async def _loop(self) -> None:
        assert self._wakeup is not None
        while True:
            while not self._items:
                if self._stopping:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            # wait for a full batch, but never longer than max_wait after the oldest item arrived
            flush_at = self._items[0].enqueued + self.max_wait_s
            while len(self._items) < self.max_batch_size and not self._stopping:
                remaining = flush_at - self._clock.now()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await self._clock.wait_for(self._wakeup.wait(), remaining)
            batch = [self._items.popleft() for _ in range(min(self.max_batch_size, len(self._items)))]
            self._set_queue_gauge()
            await self._run(batch)

    def _live(self, batch: list[_Job[P, R]]) -> list[_Job[P, R]]:
        """The jobs still worth computing: not cancelled, not past their deadline (those get a timeout)."""
        now = self._clock.now()
        live = []
        for job in batch:
            if job.future.done():  # timed out (cancelled) or client gone: drop the work
                continue
            if job.deadline <= now:
                job.future.set_exception(ServiceError("timeout", "deadline passed while queued"))
                continue
            job.queue_s = now - job.enqueued
            live.append(job)
        return live

    def _observe(self, live: list[_Job[P, R]]) -> None:
        if self._metrics is not None:
            self._metrics.batch_size.observe(len(live))
            for job in live:
                self._metrics.queue_duration.observe(job.queue_s)

    async def _run(self, batch: list[_Job[P, R]]) -> None:
        live = self._live(batch)
        if not live:
            return
        self._observe(live)
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, self._process, [j.payload for j in live])
            if len(results) != len(live):
                raise RuntimeError(f"process returned {len(results)} results for {len(live)} items")
        except Exception as exc:
            log.exception("batch of %d failed", len(live))
            for job in live:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        finally:
            self.batches += 1
        for job, result in zip(live, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)
