"""Session stores against a real Redis and in-process: capped lists, TTL refresh, erase, LRU bound,
a dead Redis failing fast with SessionStoreError, and the circuit breaker closing again once Redis is
back. The in-process TTLs and the breaker's timer run on a manual clock."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from svc_helpers import free_port, redis_server

from service.sessions import MemorySessionStore, RedisSessionStore, SessionStoreError

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _redis_store(
    url: str, prefix: str, *, ttl_s: int = 60, retry_s: float = 0.0, clock: Clock | None = None
) -> RedisSessionStore:
    return RedisSessionStore(
        url, prefix=prefix, ttl_s=ttl_s, timeout_s=0.25, connect_timeout_s=0.25, max_connections=8,
        retry_s=retry_s, clock=clock or time.monotonic,
    )


async def test_redis_capped_list_ttl_and_erase(redis_url: str, redis_prefix: str) -> None:
    store = _redis_store(redis_url, redis_prefix, ttl_s=100)
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert await store.get("alice", max_items=5) == []
        assert await store.append("alice", ["a", "b", "c"], max_items=5) == 3
        assert await store.append("alice", ["d", "e", "f", "g"], max_items=5) == 4
        assert await store.get("alice", max_items=5) == ["c", "d", "e", "f", "g"]  # oldest dropped
        assert await store.get("alice", max_items=2) == ["f", "g"]
        key = f"{redis_prefix}alice"
        assert raw.lrange(key, 0, -1) == ["c", "d", "e", "f", "g"]  # the documented key layout
        # EXPIRE ttl_s on the write: the remaining time is 100 s less what elapsed since (well under 1 s)
        assert 99_000 < raw.pttl(key) <= 100_000
        raw.expire(key, 10)
        await store.append("alice", ["h"], max_items=5)
        assert 99_000 < raw.pttl(key) <= 100_000  # refreshed by the write
        assert await store.get("bob", max_items=5) == []  # users are separate
        assert await store.delete("alice") is True
        assert await store.delete("alice") is False
        assert await store.get("alice", max_items=5) == []
        assert await store.ping() is True
    finally:
        await store.close()


async def test_redis_session_expires(redis_url: str, redis_prefix: str) -> None:
    store = _redis_store(redis_url, redis_prefix, ttl_s=1)
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        await store.append("u", ["x"], max_items=5)
        assert await store.get("u", max_items=5) == ["x"]
        assert 0 < raw.pttl(f"{redis_prefix}u") <= 1000
        deadline = time.monotonic() + 10  # Redis expires the key on its own clock: poll for it
        while raw.exists(f"{redis_prefix}u") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await store.get("u", max_items=5) == []
    finally:
        await store.close()


async def test_memory_store_lru_cap_and_ttl() -> None:
    clock = Clock()
    store = MemorySessionStore(max_users=2, ttl_s=60, clock=clock)
    await store.append("a", ["1", "2", "3"], max_items=2)
    assert await store.get("a", max_items=2) == ["2", "3"]
    await store.append("b", ["4"], max_items=2)
    await store.get("a", max_items=2)  # touch a: b is now least recently used
    await store.append("c", ["5"], max_items=2)
    assert await store.get("b", max_items=2) == []
    assert await store.get("a", max_items=2) == ["2", "3"]
    assert await store.delete("a") is True
    assert await store.delete("a") is False

    clock.t += 59.5
    await store.append("c", ["6"], max_items=2)  # a write refreshes the TTL: c now lives until +119.5
    clock.t += 59.999
    assert await store.get("c", max_items=5) == ["5", "6"]
    clock.t += 0.001  # exactly ttl_s after the last write
    assert await store.get("c", max_items=5) == []
    assert await store.delete("c") is False


async def test_memory_store_expired_user_is_not_counted_or_revived() -> None:
    clock = Clock()
    store = MemorySessionStore(max_users=10, ttl_s=5, clock=clock)
    await store.append("u", ["x", "y"], max_items=5)
    clock.t += 5
    await store.append("u", ["z"], max_items=5)  # the expired history is not carried over
    assert await store.get("u", max_items=5) == ["z"]


async def test_dead_redis_fails_fast_and_breaker_opens_for_retry_s() -> None:
    clock = Clock()
    store = _redis_store(f"redis://127.0.0.1:{free_port()}/0", "p:", retry_s=30, clock=clock)
    try:
        with pytest.raises(SessionStoreError, match="redis get failed"):
            await asyncio.wait_for(store.get("u", max_items=5), timeout=5)  # bounded: an error, not a hang
        with pytest.raises(SessionStoreError, match=r"marked down \(append skipped\)"):
            await store.append("u", ["x"], max_items=5)  # breaker open: not even tried
        clock.t += 29.999
        with pytest.raises(SessionStoreError, match="marked down"):
            await store.delete("u")
        clock.t += 0.001
        with pytest.raises(SessionStoreError, match="redis delete failed"):  # tried again after retry_s
            await asyncio.wait_for(store.delete("u"), timeout=5)
        assert await store.ping() is False
    finally:
        await store.close()


async def test_killed_redis_raises_store_error() -> None:
    with redis_server() as (url, proc):
        store = _redis_store(url, "p:", retry_s=0)
        await store.append("u", ["x"], max_items=5)
        proc.kill()
        proc.wait()
        with pytest.raises(SessionStoreError, match="redis get failed"):
            await store.get("u", max_items=5)
        await store.close()


async def test_breaker_closes_when_redis_comes_back() -> None:
    clock, port = Clock(), free_port()
    with redis_server(port) as (url, proc):
        store = _redis_store(url, "p:", retry_s=10, clock=clock)
        await store.append("u", ["x"], max_items=5)
        proc.kill()
        proc.wait()
        with pytest.raises(SessionStoreError, match="redis get failed"):
            await store.get("u", max_items=5)
    with redis_server(port):  # a fresh, empty Redis on the same address
        try:
            with pytest.raises(SessionStoreError, match="marked down"):
                await store.append("u", ["y"], max_items=5)  # still inside retry_s: not tried
            clock.t += 10
            assert await store.append("u", ["y"], max_items=5) == 1
            assert await store.get("u", max_items=5) == ["y"]
        finally:
            await store.close()


async def test_ping_ignores_the_breaker_and_reports_recovery() -> None:
    clock, port = Clock(), free_port()
    with redis_server(port) as (url, proc):
        store = _redis_store(url, "p:", retry_s=3600, clock=clock)
        proc.kill()
        proc.wait()
        assert await store.ping() is False
        with pytest.raises(SessionStoreError, match="marked down"):
            await store.get("u", max_items=5)
    with redis_server(port):
        try:
            assert await store.ping() is True  # /readyz sees the recovery at once
            assert await store.get("u", max_items=5) == []  # and a successful ping closes the breaker
        finally:
            await store.close()
