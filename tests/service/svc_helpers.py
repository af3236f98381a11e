"""Helpers for the service tests: settings, the app in-process (ASGI + lifespan) or behind a real
uvicorn socket, throwaway Redis servers, and a manual clock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from service.settings import Settings

T = TypeVar("T")

REDIS_URL = os.environ.get("SIMGR_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping())
    except Exception:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def redis_server(port: int | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A throwaway redis-server on its own port (so a test may kill it, and start another there)."""
    exe = shutil.which("redis-server")
    if exe is None:
        if in_ci():
            pytest.fail("redis-server binary not found; CI requires it")
        pytest.skip("redis-server binary not found")
    port = port or free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not redis_answers(url):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {port} did not start")
            time.sleep(0.05)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"device": "cpu", "max_wait_ms": 2.0}
    base.update(overrides)
    return Settings(**base)


@contextlib.asynccontextmanager
async def serve(app: FastAPI, **client_kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and an HTTP client talking ASGI to it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://simgr.test", **client_kwargs) as client:
            yield client


class UvicornThread:
    """A real uvicorn server on a free port, in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class ManualClock:
    """A :class:`service.clock.Clock` that moves only on :meth:`advance`; a ``wait_for`` times out exactly
    when the clock passes its deadline, so timing tests need no sleeps and no tolerances."""

    def __init__(self, start: float = 100.0) -> None:
        self.t = start
        self._timers: list[tuple[float, asyncio.Future[None]]] = []
        self._changed = asyncio.Event()

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
        for deadline, timer in self._timers:
            if deadline <= self.t and not timer.done():
                timer.set_result(None)

    @property
    def waiting(self) -> int:
        """Coroutines blocked in ``wait_for`` right now."""
        return len(self._timers)

    async def until_waiting(self, n: int, *, real_timeout_s: float = 10.0) -> None:
        """Return once ``n`` coroutines wait on this clock (a real-time bound turns a bug into a failure)."""
        async with asyncio.timeout(real_timeout_s):
            while len(self._timers) < n:
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(self, aw: Awaitable[T], timeout: float) -> T:
        fut = asyncio.ensure_future(aw)
        timer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.t + timeout, timer)
        if timeout <= 0:
            timer.set_result(None)
        self._timers.append(entry)
        self._changed.set()
        try:
            await asyncio.wait({fut, timer}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        finally:
            self._timers.remove(entry)
            self._changed.set()
        if fut.done():
            return fut.result()
        fut.cancel()  # like asyncio.wait_for: the awaited work is cancelled on timeout
        with contextlib.suppress(asyncio.CancelledError):
            await fut
        raise TimeoutError
