"""session_max_history: how many items a user's session keeps, in both stores, and what /recommend
then reads from it; 0 means the bundle's own max_history."""

from __future__ import annotations

import pytest
import redis
from svc_helpers import make_settings, serve

from service.app import create_app
from service.dummy import DummyEncoder

pytestmark = pytest.mark.anyio

EVENTS = [f"item-{i}" for i in range(10, 17)]  # 7 known items, oldest first


@pytest.mark.parametrize(("cap", "kept"), [(3, 3), (0, 5)], ids=["setting", "bundle-max-history"])
async def test_session_keeps_the_last_session_max_history_items(cap: int, kept: int) -> None:
    app = create_app(make_settings(session_max_history=cap, warmup=False),
                     loader=lambda _: DummyEncoder.random(max_history=5))
    async with serve(app) as c:
        assert (await c.post("/events", json={"user_id": "u", "item_ids": EVENTS[:4]})).json()["accepted"] == 4
        assert (await c.post("/events", json={"user_id": "u", "item_ids": EVENTS[4:]})).json()["accepted"] == 3
        assert (await c.get("/sessions/u")).json()["items"] == EVENTS[-kept:]
        r = await c.post("/recommend", json={"user_id": "u", "history": ["item-1"], "k": 3})
    assert r.json()["history_used"] == [*EVENTS, "item-1"][-min(kept + 1, 5):]


async def test_redis_list_is_trimmed_to_session_max_history(redis_url: str, redis_prefix: str) -> None:
    settings = make_settings(session_max_history=2, redis_url=redis_url, redis_prefix=redis_prefix, warmup=False)
    async with serve(create_app(settings, loader=lambda _: DummyEncoder.random())) as c:
        for item in EVENTS:
            await c.post("/events", json={"user_id": "u", "item_ids": [item]})
        assert (await c.get("/sessions/u")).json()["items"] == EVENTS[-2:]
        r = await c.post("/recommend", json={"user_id": "u", "history": ["item-1"], "k": 3})
        assert r.json()["history_used"] == [*EVENTS[-2:], "item-1"]
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    assert raw.lrange(f"{redis_prefix}u", 0, -1) == EVENTS[-2:]
