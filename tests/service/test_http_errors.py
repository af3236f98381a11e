"""The error table over HTTP: every status, one body shape {error, error_type}; auth; overload (429,
no hang); timeouts; never a 500 for input we can validate."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest
from svc_helpers import UvicornThread, make_settings, serve

from service.app import create_app
from service.dummy import DummyEncoder
from service.errors import ERROR_STATUS

pytestmark = pytest.mark.anyio

DATA_KEY, ADMIN_KEY = "data-key-0123456789", "admin-key-9876543210"


def assert_error(r: httpx.Response, error_type: str) -> None:
    assert r.status_code == ERROR_STATUS[error_type], r.text
    body = r.json()
    assert set(body) >= {"error", "error_type"}
    assert body["error_type"] == error_type
    assert body["error"]


def dummy_app(**overrides: object):  # type: ignore[no-untyped-def]
    sleep_ms = float(overrides.pop("sleep_ms", 0.0))  # type: ignore[arg-type]
    return create_app(make_settings(**overrides), loader=lambda _: DummyEncoder.random(sleep_ms=sleep_ms))


BAD_BODIES: list[tuple[str, str]] = [
    ("malformed json", '{"history": ["item-1"'),
    ("not an object", '["item-1"]'),
    ("NaN", '{"history": ["item-1"], "k": NaN}'),
    ("Infinity", '{"k": Infinity}'),
    ("NaN in list", '{"history": [NaN]}'),
    ("huge k", '{"k": 100000000000000000000000000}'),
    ("k zero", '{"k": 0}'),
    ("k 201", '{"k": 201}'),
    ("k float", '{"k": 5.0}'),
    ("k string", '{"k": "5"}'),
    ("k bool", '{"k": true}'),
    ("history not a list", '{"history": "item-1"}'),
    ("history of ints", '{"history": [1, 2]}'),
    ("empty id", '{"history": [""]}'),
    ("long id", '{"history": ["' + "x" * 129 + '"]}'),
    ("too many ids", '{"history": [' + ",".join(['"item-1"'] * 1001) + "]}"),
    ("long user id", '{"user_id": "' + "u" * 129 + '"}'),
    ("null user", '{"user_id": null, "k": null}'),
    ("unknown field", '{"histroy": ["item-1"]}'),
    ("exclude_seen string", '{"exclude_seen": "yes"}'),
    ("empty body", ""),
]


@pytest.mark.parametrize("body", [b for _, b in BAD_BODIES], ids=[n for n, _ in BAD_BODIES])
async def test_bad_recommend_bodies_are_422(bundle_dir: Path, body: str) -> None:
    async with serve(create_app(make_settings(artifacts=bundle_dir, warmup=False))) as c:
        r = await c.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert_error(r, "validation")


async def test_framework_errors_use_the_table() -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with serve(dummy_app(max_body_bytes=2000, admin_keys=ADMIN_KEY), headers=admin) as c:
        assert_error(await c.get("/no/such/route"), "not_found")
        assert_error(await c.put("/recommend", json={}), "method_not_allowed")
        assert_error(await c.post("/recommend", content=b'{"history": []}' + b" " * 3000,
                                  headers={"content-type": "application/json"}), "payload_too_large")

        async def chunks():  # no Content-Length: the streamed byte count trips the limit
            for _ in range(10):
                yield b" " * 500

        r = await c.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
        assert_error(r, "payload_too_large")
        r = await c.post("/recommend", content='{"k": 3}', headers={"content-type": "text/plain"})
        assert_error(r, "validation")
        assert_error(await c.post("/events", json={"user_id": "u", "item_ids": []}), "validation")
        assert_error(await c.get("/sessions/" + "u" * 129), "validation")
        assert_error(await c.post("/admin/reload", json={"artifacts": 5}), "validation")
        r = await c.post("/recommend", json={"history": ["item-1"]})
        assert r.status_code == 200


async def test_body_limit_default_is_one_megabyte(bundle_dir: Path) -> None:
    async with serve(create_app(make_settings(artifacts=bundle_dir, warmup=False))) as c:
        big = '{"allow": [' + ",".join(['"item-1"'] * 120_000) + "]}"
        assert len(big) > 1_000_000
        assert_error(await c.post("/recommend", content=big, headers={"content-type": "application/json"}),
                     "payload_too_large")


async def test_auth(bundle_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(artifacts=bundle_dir, warmup=False, api_keys=DATA_KEY, admin_keys=ADMIN_KEY)
    data, admin = {"Authorization": f"Bearer {DATA_KEY}"}, {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with serve(create_app(settings)) as c:
        body = {"history": ["item-1"], "k": 2}
        for path, method, kwargs in [
            ("/recommend", "POST", {"json": body}),
            ("/events", "POST", {"json": {"user_id": "u", "item_ids": ["item-1"]}}),
            ("/sessions/u", "GET", {}),
            ("/sessions/u", "DELETE", {}),
            ("/info", "GET", {}),
        ]:
            r = await c.request(method, path, **kwargs)
            assert_error(r, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
            assert_error(await c.request(method, path, headers={"Authorization": "Bearer wrong-key-123"}, **kwargs),
                         "unauthorized")
            assert_error(await c.request(method, path, headers={"Authorization": f"Basic {DATA_KEY}"}, **kwargs),
                         "unauthorized")
            assert (await c.request(method, path, headers=data, **kwargs)).status_code == 200
            assert (await c.request(method, path, headers=admin, **kwargs)).status_code == 200  # admin covers data
        for public in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert (await c.get(public)).status_code == 200
        assert_error(await c.post("/admin/reload"), "unauthorized")
        assert_error(await c.post("/admin/reload", headers=data), "forbidden")
        assert (await c.post("/admin/reload", headers=admin)).status_code == 200
        info = (await c.get("/info", headers=data)).text
        assert (await c.get("/info", headers=data)).json()["admin"] == "enabled"
    assert info.count(DATA_KEY) == 0
    assert info.count(ADMIN_KEY) == 0
    assert DATA_KEY not in caplog.text
    assert ADMIN_KEY not in caplog.text


async def test_not_ready_while_loading_then_ready() -> None:
    gate = threading.Event()

    def slow_loader(_: Path | None) -> DummyEncoder:
        gate.wait(timeout=30)
        return DummyEncoder.random()

    app = create_app(make_settings(background_load=True), loader=slow_loader)
    async with serve(app) as c:
        assert (await c.get("/healthz")).status_code == 200
        r = await c.get("/readyz")
        assert_error(r, "not_ready")
        assert r.json()["status"] == "loading"
        assert_error(await c.post("/recommend", json={"history": ["item-1"]}), "not_ready")
        assert_error(await c.get("/info"), "not_ready")
        gate.set()
        for _ in range(200):
            if (await c.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert (await c.post("/recommend", json={"history": ["item-1"]})).status_code == 200


async def test_failed_initial_background_load_reports_failed() -> None:
    def broken(_: Path | None) -> DummyEncoder:
        raise ValueError("corrupt weights")

    async with serve(create_app(make_settings(background_load=True), loader=broken)) as c:
        for _ in range(100):
            r = await c.get("/readyz")
            if r.json().get("status") == "failed":
                break
            await asyncio.sleep(0.02)
        assert_error(r, "not_ready")
        assert "corrupt weights" in r.json()["error"]


async def test_overload_gives_429_and_no_hang() -> None:
    """A slow model, a tiny queue and 40 concurrent clients over a real socket."""
    app = dummy_app(sleep_ms=150, max_batch_size=2, max_queue=4, retry_after_s=2)
    with UvicornThread(app) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as c:
            reqs = [c.post("/recommend", json={"history": [f"item-{i}"]}) for i in range(40)]
            rs = await asyncio.wait_for(asyncio.gather(*reqs), timeout=60)
            statuses = [r.status_code for r in rs]
            assert set(statuses) <= {200, 429}
            assert statuses.count(200) >= 4
            assert 429 in statuses
            for r in rs:
                if r.status_code == 429:
                    assert_error(r, "overloaded")
                    assert r.headers["retry-after"] == "2"
            assert (await c.post("/recommend", json={"history": ["item-1"]})).status_code == 200  # recovered
            metrics = (await c.get("/metrics")).text
            assert 'simgr_request_failures_total{error_type="overloaded"}' in metrics


async def test_deadline_gives_503_timeout() -> None:
    async with serve(dummy_app(sleep_ms=300, max_batch_size=1, request_timeout_ms=100, warmup=False)) as c:
        rs = await asyncio.gather(*(c.post("/recommend", json={"history": ["item-1"]}) for _ in range(3)))
        for r in rs:
            assert_error(r, "timeout")


class Exploding(DummyEncoder):
    def encode_users(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        if len(histories) == 1 and list(histories[0]) == [0]:
            raise RuntimeError("simulated model fault")
        return super().encode_users(histories)


async def test_genuine_server_fault_is_500_with_the_same_shape() -> None:
    base = DummyEncoder.random()
    enc = Exploding(item_ids=base.item_ids, embeddings=base.embeddings, popularity=base.popularity)
    async with serve(create_app(make_settings(warmup=False), loader=lambda _: enc)) as c:
        assert_error(await c.post("/recommend", json={"history": ["item-0"]}), "internal")
        assert (await c.post("/recommend", json={"history": ["item-1"]})).status_code == 200  # still serving


async def test_session_store_down_on_events_is_503() -> None:
    from svc_helpers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with serve(dummy_app(redis_url=url, redis_connect_timeout_ms=100, warmup=False)) as c:
        assert_error(await c.post("/events", json={"user_id": "u", "item_ids": ["item-1"]}),
                     "event_log_unavailable")  # the interaction log lives in the same Redis; written first
        assert_error(await c.get("/sessions/u"), "session_store_unavailable")
        assert_error(await c.delete("/sessions/u"), "session_store_unavailable")
        r = await c.post("/recommend", json={"user_id": "u", "history": ["item-1"]})
        assert r.status_code == 200
        assert r.headers["x-simgr-degraded"] == "session-store"
        ready = await c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["redis"] == "down"


@pytest.mark.parametrize("data_key", [None, DATA_KEY])
async def test_admin_is_disabled_without_an_admin_key(data_key: str | None) -> None:
    headers = {"Authorization": f"Bearer {data_key}"} if data_key else {}
    async with serve(dummy_app(api_keys=data_key or ()), headers=headers) as c:
        for auth in ({}, {"Authorization": f"Bearer {ADMIN_KEY}"}, {"Authorization": "Bearer anything-at-all"}):
            r = await c.post("/admin/reload", headers=auth)
            assert_error(r, "admin_disabled")
            assert "SIMGR_ADMIN_KEYS" in r.json()["error"]
        assert_error(await c.post("/admin/reload", json={"artifacts": 5}), "admin_disabled")  # nothing parsed
        info = (await c.get("/info")).json()
        assert info["admin"] == "disabled"
        assert (await c.post("/recommend", json={"history": ["item-1"]})).status_code == 200
