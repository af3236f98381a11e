"""Redis killed mid-run (our own redis-server on its own port): /recommend keeps answering 200 from
the request history, marked degraded; /events answers 503 and stores nothing silently; readiness
stays up and reports redis: down."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from svc_helpers import UvicornThread, make_settings, redis_server

from service.app import create_app

pytestmark = pytest.mark.anyio


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

                results: list[httpx.Response] = []
                stop = asyncio.Event()

                async def load(u: int) -> None:
                    while not stop.is_set():
                        results.append(await c.post(
                            "/recommend", json={"user_id": f"user-{u}", "history": [f"item-{u}"], "k": 5}
                        ))

                clients = [asyncio.ensure_future(load(u)) for u in range(4)]
                await asyncio.sleep(0.3)
                proc.kill()  # Redis dies under load
                proc.wait()
                await asyncio.sleep(1.0)
                stop.set()
                await asyncio.gather(*clients)

                assert results
                assert all(r.status_code == 200 for r in results)
                degraded = [r for r in results if r.headers.get("x-simgr-degraded") == "session-store"]
                assert degraded, "no response was marked degraded after Redis died"
                assert all(r.json()["history_used"] == r.json()["history_used"][-1:] for r in degraded)

                r = await c.post("/recommend", json={"user_id": "kim", "history": ["item-9"], "k": 5})
                assert r.status_code == 200
                assert r.headers["x-simgr-degraded"] == "session-store"
                assert r.json()["history_used"] == ["item-9"]
                assert len(r.json()["items"]) == 5

                r = await c.post("/events", json={"user_id": "kim", "item_ids": ["item-3"]})
                assert r.status_code == 503
                assert r.json()["error_type"] == "session_store_unavailable"

                ready = await c.get("/readyz")
                assert ready.status_code == 200
                assert ready.json()["redis"] == "down"
                metrics = (await c.get("/metrics")).text
                errors = [ln for ln in metrics.splitlines() if ln.startswith("simgr_session_store_errors_total ")]
                assert errors
                assert float(errors[0].split()[1]) >= 1
                assert re.search(r'simgr_fallback_total\{[^}]*reason="session_store"', metrics)
