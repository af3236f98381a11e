"""Session stores against a real Redis and in-process: capped lists, TTL refresh, erase, LRU bound,
and a dead Redis failing fast with SessionStoreError."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from svc_helpers import free_port, redis_server

from service.sessions import MemorySessionStore, RedisSessionStore, SessionStoreError

pytestmark = pytest.mark.anyio


def _redis_store(url: str, prefix: str, *, ttl_s: int = 60, retry_s: float = 0.0) -> RedisSessionStore:
    return RedisSessionStore(
        url, prefix=prefix, ttl_s=ttl_s, timeout_s=0.25, connect_timeout_s=0.25, max_connections=8, retry_s=retry_s
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
        assert 95 <= raw.ttl(key) <= 100
        raw.expire(key, 10)
        await store.append("alice", ["h"], max_items=5)
        assert raw.ttl(key) > 10  # refreshed by the write
        assert await store.get("bob", max_items=5) == []  # users are separate
        assert await store.delete("alice") is True
        assert await store.delete("alice") is False
        assert await store.get("alice", max_items=5) == []
        assert await store.ping() is True
    finally:
        await store.close()


async def test_redis_session_expires(redis_url: str, redis_prefix: str) -> None:
    store = _redis_store(redis_url, redis_prefix, ttl_s=1)
    try:
        await store.append("u", ["x"], max_items=5)
        assert await store.get("u", max_items=5) == ["x"]
        await asyncio.sleep(2.1)
        assert await store.get("u", max_items=5) == []
    finally:
        await store.close()


async def test_memory_store_lru_cap_and_ttl() -> None:
    store = MemorySessionStore(max_users=2, ttl_s=60)
    await store.append("a", ["1", "2", "3"], max_items=2)
    assert await store.get("a", max_items=2) == ["2", "3"]
    await store.append("b", ["4"], max_items=2)
    await store.get("a", max_items=2)  # touch a: b is now least recently used
    await store.append("c", ["5"], max_items=2)
    assert await store.get("b", max_items=2) == []
    assert await store.get("a", max_items=2) == ["2", "3"]
    assert await store.delete("a") is True
    assert await store.delete("a") is False
    short = MemorySessionStore(max_users=10, ttl_s=0.05)
    await short.append("u", ["x"], max_items=5)
    time.sleep(0.1)
    assert await short.get("u", max_items=5) == []


async def test_dead_redis_fails_fast_and_breaker_opens() -> None:
    store = _redis_store(f"redis://127.0.0.1:{free_port()}/0", "p:", retry_s=30)
    try:
        with pytest.raises(SessionStoreError):
            await asyncio.wait_for(store.get("u", max_items=5), timeout=5)  # bounded: an error, not a hang
        with pytest.raises(SessionStoreError, match="marked down"):
            await store.append("u", ["x"], max_items=5)  # breaker open: not even tried
        assert await store.ping() is False
    finally:
        await store.close()


async def test_killed_redis_raises_store_error() -> None:
    with redis_server() as (url, proc):
        store = _redis_store(url, "p:", retry_s=0)
        await store.append("u", ["x"], max_items=5)
        proc.kill()
        proc.wait()
        with pytest.raises(SessionStoreError):
            await store.get("u", max_items=5)
        await store.close()
