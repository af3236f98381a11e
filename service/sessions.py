"""Per-user session history: Redis (shared, TTL) or a bounded in-process LRU, behind one protocol.

Redis layout: one list per user at ``{prefix}{user_id}``, oldest first. A write is one MULTI/EXEC
pipeline: RPUSH the new ids, LTRIM to the last ``max_items``, EXPIRE ``ttl`` (refreshed on every
write). Reads are LRANGE of the last ``max_items``.

Every Redis operation is bounded (socket and connect timeouts, no retries, plus an overall
``asyncio.wait_for``), and after a failure the store answers ``SessionStoreError`` at once for
``retry_s`` seconds (a small circuit breaker), so a dead Redis costs /recommend nothing.

TTLs of the in-process store and the breaker's timer read an injected clock (``time.monotonic`` by
default), so tests move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from service.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


class SessionStoreError(Exception):
    """The session store could not answer (down, slow, or refusing)."""


class SessionStore(Protocol):
    kind: str  # "redis" | "memory"

    async def get(self, user_id: str, *, max_items: int) -> list[str]: ...

    async def append(self, user_id: str, item_ids: Sequence[str], *, max_items: int) -> int: ...

    async def delete(self, user_id: str) -> bool: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class MemorySessionStore:
    """Bounded LRU of users -> last ``max_items`` ids, with the same TTL semantics as Redis."""

    kind = "memory"

    def __init__(self, *, max_users: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_users = max_users
        self.ttl_s = ttl_s
        self._now = clock
        self._data: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()  # user -> (expires_at, ids)

    def _live(self, user_id: str) -> list[str] | None:
        entry = self._data.get(user_id)
        if entry is None:
            return None
        if entry[0] <= self._now():
            del self._data[user_id]
            return None
        self._data.move_to_end(user_id)
        return entry[1]

    async def get(self, user_id: str, *, max_items: int) -> list[str]:
        items = self._live(user_id)
        return list(items[-max_items:]) if items else []

    async def append(self, user_id: str, item_ids: Sequence[str], *, max_items: int) -> int:
        items = (self._live(user_id) or []) + list(item_ids)
        self._data[user_id] = (self._now() + self.ttl_s, items[-max_items:])
        self._data.move_to_end(user_id)
        while len(self._data) > self.max_users:
            self._data.popitem(last=False)
        return len(item_ids)

    async def delete(self, user_id: str) -> bool:
        return self._live(user_id) is not None and self._data.pop(user_id, None) is not None

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()


class RedisSessionStore:
    """Sessions in Redis through a pooled ``redis.asyncio`` client with bounded operations."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        ttl_s: int,
        timeout_s: float,
        connect_timeout_s: float,
        max_connections: int,
        retry_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        import redis.asyncio as redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # a blocking pool waits (bounded) for a free connection instead of raising "Too many
        # connections" under load (redis-py#2517); no retries, the caller has a fallback
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=connect_timeout_s,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
        )
        self._client = redis.Redis(connection_pool=pool)
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self._now = clock
        self._down_until = 0.0

    def key(self, user_id: str) -> str:
        return f"{self.prefix}{user_id}"

    async def _run(self, op: str, aw: Awaitable[T]) -> T:
        if self._now() < self._down_until:
            if asyncio.iscoroutine(aw):
                aw.close()
            raise SessionStoreError(f"redis marked down ({op} skipped)")
        try:
            # two socket round trips at most per operation (connect + command), then give up
            result = await asyncio.wait_for(aw, timeout=2 * self.timeout_s + 0.05)
        except Exception as exc:  # redis errors, OSError, asyncio.TimeoutError: all mean "unavailable"
            self._down_until = self._now() + self.retry_s
            log.warning("session store %s failed: %s", op, type(exc).__name__)
            raise SessionStoreError(f"redis {op} failed: {type(exc).__name__}") from exc
        self._down_until = 0.0
        return result

    async def get(self, user_id: str, *, max_items: int) -> list[str]:
        items = await self._run("get", self._client.lrange(self.key(user_id), -max_items, -1))
        return [str(i) for i in items]  # decode_responses=True: already str

    async def append(self, user_id: str, item_ids: Sequence[str], *, max_items: int) -> int:
        if not item_ids:
            return 0
        key = self.key(user_id)

        async def write() -> Any:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.rpush(key, *item_ids)
                pipe.ltrim(key, -max_items, -1)
                pipe.expire(key, self.ttl_s)
                return await pipe.execute()

        await self._run("append", write())
        return len(item_ids)

    async def delete(self, user_id: str) -> bool:
        return bool(await self._run("delete", self._client.delete(self.key(user_id))))

    async def ping(self) -> bool:
        """True when Redis answers now (ignores the breaker so /readyz reports recovery)."""
        self._down_until = 0.0
        try:
            await self._run("ping", self._client.ping())
        except SessionStoreError:
            return False
        return True

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except Exception:  # closing a pool to a dead server must not fail shutdown
            log.debug("redis close failed", exc_info=True)


def make_store(settings: Settings) -> SessionStore:
    """Redis when ``settings.redis_url`` is set, else the in-process LRU."""
    if settings.redis_url:
        return RedisSessionStore(
            settings.redis_url,
            prefix=settings.redis_prefix,
            ttl_s=settings.session_ttl_s,
            timeout_s=settings.redis_timeout_ms / 1000,
            connect_timeout_s=settings.redis_connect_timeout_ms / 1000,
            max_connections=settings.redis_max_connections,
            retry_s=settings.redis_retry_s,
        )
    return MemorySessionStore(max_users=settings.local_max_users, ttl_s=settings.session_ttl_s)
