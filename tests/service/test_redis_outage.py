"""Redis killed mid-run (our own redis-server on its own port): /recommend keeps answering 200 from
the request history, marked degraded; /events answers 503 and stores nothing silently; readiness
stays up and reports redis: down."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from svc_helpers import UvicornThread, free_port, make_settings, redis_server, serve

from service.app import create_app

pytestmark = pytest.mark.anyio


Answers = list[tuple[int, httpx.Response]]  # (user, the answer to one /recommend)


async def _load_while_redis_dies(c: httpx.AsyncClient, proc: subprocess.Popen[bytes], users: range) -> Answers:
    """Each user asks for recommendations in a loop; Redis is killed once every user has had an answer with
    it up, and the loop ends once every user has had one marked degraded (or after 30 s)."""
    results: Answers = []
    stop = asyncio.Event()

    async def load(u: int) -> None:
        while not stop.is_set():
            results.append((u, await c.post(
                "/recommend", json={"user_id": f"user-{u}", "history": [f"item-{u}"], "k": 5}
            )))

    def seen(degraded: bool) -> set[int]:
        return {u for u, r in results if ("x-simgr-degraded" in r.headers) == degraded}

    async def until(cond: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not cond() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    clients = [asyncio.ensure_future(load(u)) for u in users]
    await until(lambda: seen(degraded=False) == set(users))
    proc.kill()  # Redis dies under load
    proc.wait()
    await until(lambda: seen(degraded=True) == set(users))
    stop.set()
    await asyncio.gather(*clients)
    assert seen(degraded=False) == set(users), "some user never got an answer with Redis up"
    assert seen(degraded=True) == set(users), "some user was never marked degraded after Redis died"
    return results


async def _check_redis_down(c: httpx.AsyncClient) -> None:
    """With Redis dead: recommendations from the request alone, events refused, readiness up, and the
    errors counted."""
    r = await c.post("/recommend", json={"user_id": "kim", "history": ["item-9"], "k": 5})
    assert r.status_code == 200
    assert r.headers["x-simgr-degraded"] == "session-store"
    assert r.json()["history_used"] == ["item-9"]
    assert len(r.json()["items"]) == 5

    r = await c.post("/events", json={"user_id": "kim", "item_ids": ["item-3"]})
    assert r.status_code == 503
    assert r.json()["error_type"] == "event_log_unavailable"  # the log, in the dead Redis, goes first

    ready = await c.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["redis"] == "down"
    metrics = (await c.get("/metrics")).text
    errors = [ln for ln in metrics.splitlines() if ln.startswith("simgr_session_store_errors_total ")]
    assert errors
    assert float(errors[0].split()[1]) >= 1
    assert re.search(r'simgr_fallback_total\{[^}]*reason="session_store"', metrics)


async def test_redis_killed_mid_run(bundle_dir: Path) -> None:
    with redis_server() as (url, proc):
        settings = make_settings(
            artifacts=bundle_dir, redis_url=url, redis_timeout_ms=200, redis_connect_timeout_ms=200,
            redis_retry_s=0.2,
        )
        with UvicornThread(create_app(settings)) as server:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as c:
                r = await c.post("/events", json={"user_id": "kim", "item_ids": ["item-1", "item-2"]})
                assert r.json()["accepted"] == 2
                r = await c.post("/recommend", json={"user_id": "kim", "history": ["item-9"], "k": 5})
                assert r.json()["history_used"] == ["item-1", "item-2", "item-9"]
                assert (await c.get("/readyz")).json()["redis"] == "ok"

                users = range(4)
                for u in users:  # every user has a session before Redis dies
                    r = await c.post("/events", json={"user_id": f"user-{u}", "item_ids": [f"item-{u + 10}"]})
                    assert r.json()["accepted"] == 1
                results = await _load_while_redis_dies(c, proc, users)
                assert all(r.status_code == 200 for _, r in results)
                for u, r in results:
                    if "x-simgr-degraded" in r.headers:  # Redis gone: the request's own history only
                        assert r.headers["x-simgr-degraded"] == "session-store"
                        assert r.json()["history_used"] == [f"item-{u}"]
                    else:  # Redis up: the session, then the request's history
                        assert r.json()["history_used"] == [f"item-{u + 10}", f"item-{u}"]
                await _check_redis_down(c)


async def test_sessions_come_back_with_redis(bundle_dir: Path) -> None:
    """After the breaker opened, a Redis restarted on the same address is used again within retry_s."""
    port = free_port()
    with redis_server(port) as (url, proc):
        settings = make_settings(
            artifacts=bundle_dir, redis_url=url, redis_timeout_ms=200, redis_connect_timeout_ms=200,
            redis_retry_s=0.2, warmup=False,
        )
        async with serve(create_app(settings)) as c:
            proc.kill()
            proc.wait()
            r = await c.post("/recommend", json={"user_id": "kim", "history": ["item-9"], "k": 5})
            assert r.headers["x-simgr-degraded"] == "session-store"
            assert (await c.post("/events", json={"user_id": "kim", "item_ids": ["item-1"]})).status_code == 503
            with redis_server(port):  # an empty Redis on the same address
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:  # the breaker lets a call through after retry_s
                    r = await c.post("/events", json={"user_id": "kim", "item_ids": ["item-1"]})
                    if r.status_code != 503:
                        break
                    await asyncio.sleep(0.05)
                assert r.status_code == 200, r.text
                assert r.json()["accepted"] == 1
                r = await c.post("/recommend", json={"user_id": "kim", "history": ["item-9"], "k": 5})
                assert r.status_code == 200
                assert "x-simgr-degraded" not in r.headers
                assert r.json()["history_used"] == ["item-1", "item-9"]
                ready = await c.get("/readyz")
                assert ready.json()["redis"] == "ok"
