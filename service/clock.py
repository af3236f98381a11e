"""The service's notion of time, injectable so batching, deadlines, TTLs and the Redis circuit breaker
can be tested exactly (a manual clock in the tests) instead of by sleeping.

``now()`` is a monotonic reading in seconds; ``wait_for(aw, timeout)`` awaits ``aw`` and raises
``TimeoutError`` once ``timeout`` seconds of this clock have passed, like ``asyncio.wait_for``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def now(self) -> float: ...

    async def wait_for(self, aw: Awaitable[T], timeout: float) -> T: ...


class MonotonicClock:
    """Wall time: ``time.monotonic`` and ``asyncio.wait_for``."""

    def now(self) -> float:
        return time.monotonic()

    async def wait_for(self, aw: Awaitable[T], timeout: float) -> T:
        return await asyncio.wait_for(aw, timeout=timeout)


MONOTONIC = MonotonicClock()
