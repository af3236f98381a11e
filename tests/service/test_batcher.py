"""Batcher: concurrent submits share forwards, results go back to their callers, the queue is bounded
(429), deadlines drop work (503 timeout), stop() drains. Time is a manual clock and the model blocks on
an event, so every batch composition and queue time below is exact."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from svc_helpers import ManualClock

from service.batcher import Batcher
from service.errors import ServiceError
from service.metrics import Metrics

pytestmark = pytest.mark.anyio


class Recorder:
    """process(): squares its inputs, records batches and threads; the first call blocks on ``gate``."""

    def __init__(self, *, gated: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[int] = set()
        self.started = threading.Event()  # the first batch is inside process()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def __call__(self, xs: Sequence[int]) -> list[int]:
        self.threads.add(threading.get_ident())
        self.batches.append(list(xs))
        self.started.set()
        if not self.gate.wait(timeout=30):
            raise RuntimeError("gate never opened")
        return [x * x for x in xs]

    async def until_started(self) -> None:
        assert await asyncio.to_thread(self.started.wait, 10), "no batch reached the model"


async def test_batches_fill_while_the_model_runs_and_results_route_back() -> None:
    clock, rec, metrics = ManualClock(), Recorder(gated=True), Metrics()
    b: Batcher[int, int] = Batcher(
        rec, max_batch_size=8, max_wait_ms=20, max_queue=100, metrics=metrics, clock=clock
    )
    b.start()
    try:
        first = asyncio.ensure_future(b.submit(0, timeout_s=10))
        await clock.until_waiting(2)  # the waiter's deadline and the batcher's 20 ms flush timer
        clock.advance(0.019)
        assert rec.batches == []  # not yet: the batch is not full and 20 ms have not passed
        clock.advance(0.001)
        await rec.until_started()
        rest = [asyncio.ensure_future(b.submit(i, timeout_s=10)) for i in range(1, 41)]
        await clock.until_waiting(41)  # every waiter is queued behind the running batch
        assert b.queue_size == 40
        clock.advance(0.1)  # the model takes 100 ms
        rec.gate.set()
        out = await asyncio.gather(first, *rest)
    finally:
        await b.stop()
    assert [r for r, _ in out] == [i * i for i in range(41)]
    assert rec.batches == [[0]] + [list(range(i, i + 8)) for i in range(1, 41, 8)]
    assert out[0][1] == pytest.approx(0.020, abs=1e-9)  # waited for the flush timer
    assert [q for _, q in out[1:]] == pytest.approx([0.1] * 40, abs=1e-9)  # waited for the running batch
    assert len(rec.threads) == 1  # one model worker
    assert b.batches == 6
    assert metrics.batch_size._sum.get() == 41  # type: ignore[attr-defined]
    assert metrics.queue_duration._sum.get() == pytest.approx(0.02 + 40 * 0.1)  # type: ignore[attr-defined]


async def test_single_request_flushes_after_max_wait_on_the_wall_clock() -> None:
    rec = Recorder()
    b: Batcher[int, int] = Batcher(rec, max_batch_size=64, max_wait_ms=5, max_queue=10)
    b.start()
    try:
        result, queue_s = await asyncio.wait_for(b.submit(3, timeout_s=5), timeout=5)
    finally:
        await b.stop()
    assert result == 9
    assert rec.batches == [[3]]
    assert 0.005 <= queue_s < 5  # the flush timer ran on time.monotonic: at least max_wait


async def test_full_queue_answers_overloaded_with_retry_after() -> None:
    clock, rec = ManualClock(), Recorder(gated=True)
    b: Batcher[int, int] = Batcher(
        rec, max_batch_size=1, max_wait_ms=0, max_queue=2, retry_after_s=3, clock=clock
    )
    b.start()
    try:
        tasks = [asyncio.ensure_future(b.submit(0, timeout_s=10))]
        await rec.until_started()  # the first is computing
        tasks += [asyncio.ensure_future(b.submit(i, timeout_s=10)) for i in (1, 2)]
        await clock.until_waiting(3)
        assert b.queue_size == 2  # two wait: the queue is full
        with pytest.raises(ServiceError, match=r"queue full \(2 waiting\)") as err:
            await b.submit(99, timeout_s=10)
        assert err.value.error_type == "overloaded"
        assert err.value.status == 429
        assert err.value.headers["Retry-After"] == "3"
        rec.gate.set()
        assert [r for r, _ in await asyncio.gather(*tasks)] == [0, 1, 4]
    finally:
        rec.gate.set()
        await b.stop()
    assert [99] not in rec.batches


async def test_deadline_drops_queued_work() -> None:
    clock, rec = ManualClock(), Recorder(gated=True)
    b: Batcher[int, int] = Batcher(rec, max_batch_size=1, max_wait_ms=0, max_queue=10, clock=clock)
    b.start()
    try:
        first = asyncio.ensure_future(b.submit(1, timeout_s=10))
        await rec.until_started()
        late = asyncio.ensure_future(b.submit(2, timeout_s=0.05))  # waits behind the running batch
        await clock.until_waiting(2)
        clock.advance(0.049)
        assert not late.done()
        clock.advance(0.001)
        with pytest.raises(ServiceError, match="no result within 50 ms") as err:
            await late
        assert err.value.error_type == "timeout"
        assert err.value.status == 503
        rec.gate.set()
        assert (await first)[0] == 1
    finally:
        rec.gate.set()
        await b.stop()
    assert rec.batches == [[1]]  # the expired item never reached the model


async def test_stop_finishes_queued_items() -> None:
    clock, rec = ManualClock(), Recorder(gated=True)
    b: Batcher[int, int] = Batcher(rec, max_batch_size=2, max_wait_ms=0, max_queue=10, clock=clock)
    b.start()
    tasks = [asyncio.ensure_future(b.submit(i, timeout_s=10)) for i in range(6)]
    await clock.until_waiting(6)
    await rec.until_started()
    stopping = asyncio.ensure_future(b.stop())
    rec.gate.set()
    await stopping
    assert [r for r, _ in await asyncio.gather(*tasks)] == [0, 1, 4, 9, 16, 25]
    assert rec.batches == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ServiceError, match="not running") as err:
        await b.submit(1, timeout_s=1)
    assert err.value.error_type == "not_ready"


async def test_process_error_reaches_every_waiter() -> None:
    def boom(xs: Sequence[int]) -> list[int]:
        raise RuntimeError("model crashed")

    clock = ManualClock()
    b: Batcher[int, int] = Batcher(boom, max_batch_size=4, max_wait_ms=10, max_queue=10, clock=clock)
    b.start()
    try:
        waiters = [asyncio.ensure_future(b.submit(i, timeout_s=5)) for i in range(3)]
        await clock.until_waiting(4)  # three deadlines and the flush timer
        clock.advance(0.01)
        results = await asyncio.gather(*waiters, return_exceptions=True)
    finally:
        await b.stop()
    assert [str(r) for r in results] == ["model crashed"] * 3
    assert all(isinstance(r, RuntimeError) for r in results)
    assert b.batches == 1


async def test_wrong_result_count_is_an_error_for_the_batch() -> None:
    clock = ManualClock()
    b: Batcher[int, int] = Batcher(lambda xs: [0], max_batch_size=2, max_wait_ms=10, max_queue=10, clock=clock)
    b.start()
    try:
        waiters = [b.submit(i, timeout_s=5) for i in (1, 2)]  # a full batch: no flush timer involved
        results = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), timeout=10)
    finally:
        await b.stop()
    assert [str(r) for r in results] == ["process returned 1 results for 2 items"] * 2
