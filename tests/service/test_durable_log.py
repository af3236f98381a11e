"""Durable logs on a real Redis and a real file: round trip, order, follow, torn tail, outage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.durable_log import DurableLog, FileJournal, LogUnavailable, RedisStreamLog, open_log

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["redis", "file"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> DurableLog:
    if request.param == "redis":
        url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        return open_log(name="t", redis_url=url, state_dir=None, redis_prefix=prefix)
    return open_log(name="t", redis_url=None, state_dir=tmp_path)


async def test_append_then_read_in_order(log: DurableLog) -> None:
    ids = await log.append([{"op": "a", "n": 1}, {"op": "b", "n": 2}])
    ids += await log.append([{"op": "c", "n": 3}])
    entries = await log.read("0")
    assert [e.record["n"] for e in entries] == [1, 2, 3]
    assert [e.id for e in entries] == ids
    after_first = await log.read(ids[0])
    assert [e.record["op"] for e in after_first] == ["b", "c"]
    assert await log.read(ids[-1]) == []
    await log.close()


async def test_wait_wakes_on_a_write_from_another_writer(log: DurableLog, tmp_path: Path) -> None:
    first = await log.append([{"n": 0}])
    waiter = asyncio.create_task(log.wait(first[0], timeout_s=5.0))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await log.append([{"n": 1}])
    got = await asyncio.wait_for(waiter, timeout=5.0)
    assert [e.record for e in got] == [{"n": 1}]
    assert await log.wait(got[-1].id, timeout_s=0.1) == []  # times out empty
    await log.close()


async def test_journal_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = FileJournal(path=path)
    await journal.append([{"n": 1}])
    with open(path, "ab") as f:
        f.write(b'{"n": 2')  # a crash mid-write: no newline
    assert [e.record for e in await journal.read()] == [{"n": 1}]
    ids = await journal.append([{"n": 3}])
    assert ids == ["2"]
    assert [e.record for e in await FileJournal(path=path).read()] == [{"n": 1}, {"n": 3}]


async def test_unreachable_redis_is_unavailable_not_acknowledged() -> None:
    log = RedisStreamLog(url="redis://127.0.0.1:1/0", key="nowhere", timeout_s=0.2)
    with pytest.raises(LogUnavailable, match="append failed"):
        await log.append([{"n": 1}])
    with pytest.raises(LogUnavailable, match="read failed"):
        await log.read()
    await log.close()


async def test_unwritable_journal_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    journal = FileJournal(path=blocker / "j.jsonl")
    with pytest.raises(LogUnavailable, match="append failed"):
        await journal.append([{"n": 1}])


def test_open_log_needs_a_backend() -> None:
    with pytest.raises(ValueError, match="SIMGR_STATE_DIR"):
        open_log(name="x", redis_url=None, state_dir=None)
