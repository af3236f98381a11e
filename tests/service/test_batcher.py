"""DynamicBatcher: concurrent submits share forwards, results go back to their callers, the queue
is bounded (429), deadlines drop work (503 timeout), stop() drains."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from service.batcher import Batcher
from service.errors import ServiceError
from service.metrics import Metrics

pytestmark = pytest.mark.anyio


class Recorder:
    """process(): squares its inputs, records batch sizes and the threads it ran on."""

    def __init__(self, sleep_s: float = 0.0) -> None:
        self.sleep_s = sleep_s
        self.batches: list[list[int]] = []
        self.threads: set[int] = set()

    def __call__(self, xs: Sequence[int]) -> list[int]:
        self.threads.add(threading.get_ident())
        self.batches.append(list(xs))
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return [x * x for x in xs]


async def test_concurrent_submits_share_batches_and_route_results() -> None:
    rec = Recorder(sleep_s=0.02)
    metrics = Metrics()
    b: Batcher[int, int] = Batcher(rec, max_batch_size=8, max_wait_ms=20, max_queue=100, metrics=metrics)
    b.start()
    try:
        out = await asyncio.gather(*(b.submit(i, timeout_s=10) for i in range(40)))
    finally:
        await b.stop()
    assert [r for r, _ in out] == [i * i for i in range(40)]
    assert all(q >= 0 for _, q in out)
    assert sorted(x for batch in rec.batches for x in batch) == list(range(40))
    assert max(len(batch) for batch in rec.batches) == 8
    assert len(rec.batches) < 40  # batching happened
    assert len(rec.threads) == 1  # one model worker
    assert metrics.batch_size._sum.get() == 40  # type: ignore[attr-defined]


async def test_single_request_flushes_after_max_wait() -> None:
    rec = Recorder()
    b: Batcher[int, int] = Batcher(rec, max_batch_size=64, max_wait_ms=5, max_queue=10)
    b.start()
    try:
        result, _ = await asyncio.wait_for(b.submit(3, timeout_s=5), timeout=5)
    finally:
        await b.stop()
    assert result == 9
    assert rec.batches == [[3]]


async def test_full_queue_answers_overloaded_with_retry_after() -> None:
    rec = Recorder(sleep_s=0.2)
    b: Batcher[int, int] = Batcher(rec, max_batch_size=1, max_wait_ms=0, max_queue=2, retry_after_s=3)
    b.start()
    try:
        tasks = [asyncio.ensure_future(b.submit(0, timeout_s=10))]
        await asyncio.sleep(0.05)  # the first is computing
        tasks += [asyncio.ensure_future(b.submit(i, timeout_s=10)) for i in (1, 2)]
        await asyncio.sleep(0.01)  # two wait: the queue is full
        with pytest.raises(ServiceError) as err:
            await b.submit(99, timeout_s=10)
        assert err.value.error_type == "overloaded"
        assert err.value.status == 429
        assert err.value.headers["Retry-After"] == "3"
        assert [r for r, _ in await asyncio.gather(*tasks)] == [0, 1, 4]
    finally:
        await b.stop()


async def test_deadline_drops_queued_work() -> None:
    rec = Recorder(sleep_s=0.3)
    b: Batcher[int, int] = Batcher(rec, max_batch_size=1, max_wait_ms=0, max_queue=10)
    b.start()
    try:
        first = asyncio.ensure_future(b.submit(1, timeout_s=10))
        await asyncio.sleep(0.05)
        with pytest.raises(ServiceError) as err:
            await b.submit(2, timeout_s=0.05)  # waits behind a 300 ms batch
        assert err.value.error_type == "timeout"
        assert err.value.status == 503
        assert (await first)[0] == 1
    finally:
        await b.stop()
    assert [2] not in rec.batches  # the expired item never reached the model


async def test_stop_finishes_queued_items() -> None:
    rec = Recorder(sleep_s=0.05)
    b: Batcher[int, int] = Batcher(rec, max_batch_size=2, max_wait_ms=0, max_queue=10)
    b.start()
    tasks = [asyncio.ensure_future(b.submit(i, timeout_s=10)) for i in range(6)]
    await asyncio.sleep(0.01)
    await b.stop()
    assert [r for r, _ in await asyncio.gather(*tasks)] == [0, 1, 4, 9, 16, 25]
    with pytest.raises(ServiceError) as err:
        await b.submit(1, timeout_s=1)
    assert err.value.error_type == "not_ready"


async def test_process_error_reaches_every_waiter() -> None:
    def boom(xs: Sequence[int]) -> list[int]:
        raise RuntimeError("model crashed")

    b: Batcher[int, int] = Batcher(boom, max_batch_size=4, max_wait_ms=10, max_queue=10)
    b.start()
    try:
        results = await asyncio.gather(*(b.submit(i, timeout_s=5) for i in range(3)), return_exceptions=True)
    finally:
        await b.stop()
    assert all(isinstance(r, RuntimeError) for r in results)
