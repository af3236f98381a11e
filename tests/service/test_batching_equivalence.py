"""A prompt gets the same answer (to 1e-5) whether it is batched with others or served alone:
different-length histories in one forward, through the real bundle and the real HTTP pipeline."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from svc_helpers import make_settings, serve

from model.export.bundle import Bundle
from service.app import create_app

pytestmark = pytest.mark.anyio

HISTORIES = [[f"item-{(7 * u + j) % 200}" for j in range(n)] for u, n in enumerate([1, 2, 5, 9, 14, 20, 30])]


def test_bundle_batched_equals_alone(bundle_dir: Path) -> None:
    bundle = Bundle.load(bundle_dir)
    hist = [[bundle.item_lookup[i] for i in h] for h in HISTORIES]
    together = bundle.encode_users(hist)  # (B, D), one padded forward
    for b, h in enumerate(hist):
        np.testing.assert_allclose(together[b], bundle.encode_users([h])[0], atol=1e-5, rtol=0)


async def test_http_batched_equals_alone(bundle_dir: Path) -> None:
    # a long max_wait makes the concurrent requests share one batch
    batched_app = create_app(make_settings(artifacts=bundle_dir, max_wait_ms=300, max_batch_size=16))
    async with serve(batched_app) as c:
        before = batched_app.state.recommender.batcher.batches
        rs = await asyncio.gather(*(c.post("/recommend", json={"history": h, "k": 20}) for h in HISTORIES))
        n_batches = batched_app.state.recommender.batcher.batches - before
    assert n_batches < len(HISTORIES)  # they really were batched together
    alone_app = create_app(make_settings(artifacts=bundle_dir, max_batch_size=1, warmup=False))
    async with serve(alone_app) as c:
        singles = [await c.post("/recommend", json={"history": h, "k": 20}) for h in HISTORIES]
    for r_b, r_1 in zip(rs, singles, strict=True):
        assert r_b.status_code == r_1.status_code == 200
        b_items, s_items = r_b.json()["items"], r_1.json()["items"]
        np.testing.assert_allclose([i["score"] for i in b_items], [i["score"] for i in s_items], atol=1e-5, rtol=0)
        assert [i["item_id"] for i in b_items] == [i["item_id"] for i in s_items]
