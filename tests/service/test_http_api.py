"""Happy paths over HTTP with a real tiny bundle and real FAISS: known answers against the bundle
itself, every filter, cold start, unknown ids, sessions (real Redis), headers, /info, /metrics."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from svc_helpers import make_settings, serve

from model.export.bundle import Bundle
from model.training.allocator import malloc_in_use
from service.app import create_app

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path) -> Bundle:
    return Bundle.load(bundle_dir)


@pytest.fixture
async def client(bundle_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(make_settings(artifacts=bundle_dir))) as c:
        yield c


def exact_top(bundle: Bundle, history: list[int], k: int, *, drop: set[int] = frozenset()) -> list[tuple[str, float]]:
    """Reference: the bundle's own embedding and a brute-force dot product."""
    q = bundle.encode_users([history])[0]
    scores = bundle.embeddings @ q  # (N,)
    order = [int(i) for i in np.argsort(-scores, kind="stable") if int(i) not in drop]
    return [(bundle.item_ids[i], float(scores[i])) for i in order[:k]]


def ids(resp: httpx.Response) -> list[str]:
    return [it["item_id"] for it in resp.json()["items"]]


async def test_recommend_known_answer(client: httpx.AsyncClient, bundle: Bundle) -> None:
    history = ["item-3", "item-17", "item-42"]
    r = await client.post("/recommend", json={"history": history, "k": 7})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == bundle.model_version
    assert body["history_used"] == history
    assert body["unknown_items"] == []
    assert body["fallback"] is None
    assert [it["rank"] for it in body["items"]] == list(range(1, 8))
    hist_idx = [bundle.item_lookup[i] for i in history]
    ref = exact_top(bundle, hist_idx, 7, drop=set(hist_idx))
    got = [(it["item_id"], it["score"]) for it in body["items"]]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in ref], atol=1e-5)
    assert [i for i, _ in got] == [i for i, _ in ref]
    assert body["request_id"] == r.headers["x-request-id"]


async def test_filters(client: httpx.AsyncClient, bundle: Bundle) -> None:
    history = ["item-1", "item-2", "item-3"]
    seen = await client.post("/recommend", json={"history": history, "k": 200, "exclude_seen": False})
    assert len(ids(seen)) == 200
    assert set(history) <= set(ids(seen))
    hist_idx = [bundle.item_lookup[i] for i in history]
    assert ids(seen)[:10] == [i for i, _ in exact_top(bundle, hist_idx, 10)]

    unseen = await client.post("/recommend", json={"history": history, "k": 200})
    assert len(ids(unseen)) == 197
    assert not set(history) & set(ids(unseen))

    top5 = ids(unseen)[:5]
    excl = await client.post("/recommend", json={"history": history, "k": 10, "exclude": top5[:3]})
    assert ids(excl) == ids(unseen)[3:13]  # exactly k, the next best ones

    allow = ["item-10", "item-11", "item-12", "item-13", "item-1", "nope"]
    r = await client.post("/recommend", json={"history": history, "k": 3, "allow": allow})
    got = ids(r)
    assert len(got) == 3
    assert set(got) <= {"item-10", "item-11", "item-12", "item-13"}
    assert got == [i for i in ids(unseen) if i in allow][:3]
    assert r.json()["unknown_items"] == ["nope"]

    few = await client.post("/recommend", json={"history": history, "k": 10, "allow": ["item-10", "item-1"]})
    assert ids(few) == ["item-10"]  # fewer remain than k: all of them

    both = await client.post(
        "/recommend", json={"history": history, "k": 2, "allow": allow[:4], "exclude": ["item-10", "item-11"]}
    )
    assert set(ids(both)) == {"item-12", "item-13"}


async def test_cold_start_and_unknown_ids(client: httpx.AsyncClient, bundle_dir: Path) -> None:
    popular = json.loads((bundle_dir / "popularity.json").read_text())
    r = await client.post("/recommend", json={"k": 5})
    body = r.json()
    assert r.status_code == 200
    assert body["fallback"] == "popular"
    assert body["history_used"] == []
    assert ids(r) == popular[:5]
    assert all(it["score"] is None for it in body["items"])

    r = await client.post("/recommend", json={"history": ["ghost-1", "ghost-2", "ghost-1"], "k": 4})
    body = r.json()
    assert r.status_code == 200
    assert body["fallback"] == "popular"
    assert body["unknown_items"] == ["ghost-1", "ghost-2"]
    assert ids(r) == popular[:4]

    r = await client.post("/recommend", json={"k": 3, "exclude": popular[:2], "allow": popular[1:6]})
    assert ids(r) == popular[2:5]  # filters apply to the fallback too

    r = await client.post("/recommend", json={"history": ["ghost", "item-5"], "k": 3})
    body = r.json()
    assert body["fallback"] is None
    assert body["history_used"] == ["item-5"]
    assert body["unknown_items"] == ["ghost"]


async def test_sessions_across_requests_real_redis(bundle_dir: Path, redis_url: str, redis_prefix: str) -> None:
    settings = make_settings(artifacts=bundle_dir, redis_url=redis_url, redis_prefix=redis_prefix, session_ttl_s=600)
    async with serve(create_app(settings)) as c:
        info = (await c.get("/info")).json()
        assert info["session_store"] == "redis"
        assert info["malloc"] == malloc_in_use()  # this test process's: tests/service/test_serve_cmd.py preloads
        r = await c.post("/events", json={"user_id": "ann", "item_ids": ["item-1", "item-2", "zzz"]})
        assert r.json() == {"accepted": 2, "unknown_items": ["zzz"]}
        await c.post("/events", json={"user_id": "ann", "item_ids": ["item-3"]})
        assert (await c.get("/sessions/ann")).json() == {"user_id": "ann", "items": ["item-1", "item-2", "item-3"]}

        r = await c.post("/recommend", json={"user_id": "ann", "history": ["item-9"], "k": 5})
        assert r.json()["history_used"] == ["item-1", "item-2", "item-3", "item-9"]  # session, then request
        assert not {"item-1", "item-2", "item-3", "item-9"} & set(ids(r))
        assert "x-simgr-degraded" not in r.headers

        many = [f"item-{i}" for i in range(100, 130)]
        await c.post("/events", json={"user_id": "ann", "item_ids": many})
        stored = (await c.get("/sessions/ann")).json()["items"]
        assert stored == many[-20:]  # capped at the model's max_history

        import redis

        # EXPIRE session_ttl_s (600) on the write, less the well-under-a-second since
        assert 599_000 < redis.Redis.from_url(redis_url).pttl(f"{redis_prefix}ann") <= 600_000
        assert (await c.delete("/sessions/ann")).json() == {"user_id": "ann", "deleted": True}
        assert (await c.delete("/sessions/ann")).json()["deleted"] is False
        assert (await c.get("/sessions/ann")).json()["items"] == []
        assert (await c.post("/recommend", json={"user_id": "ann", "k": 2})).json()["fallback"] == "popular"


async def test_memory_store_is_default_and_reported(client: httpx.AsyncClient, bundle: Bundle) -> None:
    info = (await client.get("/info")).json()
    assert info["session_store"] == "memory"
    assert info["n_items"] == bundle.n_items
    assert info["dim"] == bundle.dim
    assert info["model_version"] == bundle.model_version
    assert info["batching"]["max_batch_size"] == 32
    assert info["batching"]["max_wait_ms"] == 2.0
    await client.post("/events", json={"user_id": "u", "item_ids": ["item-4"]})
    r = await client.post("/recommend", json={"user_id": "u", "k": 2})
    assert r.json()["history_used"] == ["item-4"]


async def test_headers_on_every_response(client: httpx.AsyncClient) -> None:
    for method, path, kwargs in [  # none of these reaches the model: only the total time is spent
        ("POST", "/recommend", {"json": {"k": 0}}),
        ("POST", "/recommend", {"json": {"k": 3}}),  # empty history: the popularity fallback
        ("GET", "/healthz", {}),
        ("GET", "/nowhere", {}),
        ("GET", "/metrics", {}),
    ]:
        r = await client.request(method, path, **kwargs)
        assert len(r.headers["x-request-id"]) >= 16
        for h in ("x-queue-time", "x-inference-time", "x-search-time"):
            assert r.headers[h] == "0.000"
        assert float(r.headers["x-total-time"]) > 0
    r = await client.post("/recommend", json={"history": ["item-1"]})
    parts = [float(r.headers[h]) for h in ("x-queue-time", "x-inference-time", "x-search-time")]
    assert parts[1] > 0
    assert parts[2] > 0
    assert float(r.headers["x-total-time"]) >= sum(parts)  # the parts happen inside the request
    r = await client.post("/recommend", json={"history": ["item-1"]}, headers={"X-Request-ID": "trace-abc.123"})
    assert r.headers["x-request-id"] == "trace-abc.123"
    assert r.json()["request_id"] == "trace-abc.123"
    assert float(r.headers["x-inference-time"]) > 0
    r = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces"


async def test_health_ready_and_metrics(client: httpx.AsyncClient, bundle: Bundle) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["model_version"] == bundle.model_version
    assert ready.json()["redis"] == "disabled"
    for _ in range(3):
        await client.post("/recommend", json={"history": ["item-1"], "k": 3})
    await client.post("/recommend", json={"k": 3})
    await client.post("/recommend", json={"k": 999})
    text = (await client.get("/metrics")).text
    v = bundle.model_version
    assert f'simgr_requests_total{{endpoint="/recommend",model_version="{v}",status="200"}} 4.0' in text
    assert 'simgr_requests_total{endpoint="/recommend",model_version="",status="422"} 1.0' in text
    assert 'simgr_request_failures_total{error_type="validation"} 1.0' in text
    assert f'simgr_fallback_total{{model_version="{v}",reason="empty_history"}} 1.0' in text
    assert f'simgr_model_info{{model_version="{v}",role="primary"}} 1.0' in text
    for name in (
        "simgr_request_duration_seconds_bucket",
        "simgr_queue_duration_seconds_bucket",
        "simgr_inference_duration_seconds_bucket",
        "simgr_search_duration_seconds_bucket",
        "simgr_batch_size_bucket",
        "simgr_queue_size",
        "simgr_session_store_errors_total",
    ):
        assert name in text
    assert 'le="0.0001"' in text  # fine buckets start at 0.1 ms
