"""Canary traffic: a stable hash of user_id (else the request id) sends a set share of users to the
second bundle; metrics and /info tell the versions apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from svc_helpers import make_settings, serve

from model.export.release import publish
from service.app import create_app
from service.canary import in_canary

pytestmark = pytest.mark.anyio


def version(bundle_dir: Path) -> str:
    return str(json.loads((bundle_dir / "manifest.json").read_text())["model_version"])


@pytest.mark.parametrize("percent", [5.0, 20.0, 50.0])
async def test_split_matches_the_setting_and_sticks(bundle_dir: Path, bundle_dir_v2: Path, percent: float) -> None:
    v1, v2 = version(bundle_dir), version(bundle_dir_v2)
    settings = make_settings(artifacts=bundle_dir, canary_artifacts=bundle_dir_v2, canary_percent=percent,
                             warmup=False)
    app = create_app(settings)
    async with serve(app) as c:
        rec = app.state.recommender
        picks = [rec.pick_state(f"user-{u}", f"req-{u}").model_version for u in range(5000)]
        share = 100 * picks.count(v2) / len(picks)
        assert abs(share - percent) <= 3, share
        assert set(picks) == {v1, v2}
        for u in range(0, 5000, 50):  # over HTTP: the same user gets the same version every time
            got = {(await c.post("/recommend", json={"user_id": f"user-{u}", "history": ["item-1"]})).json()[
                "model_version"] for _ in range(2)}
            assert got == {picks[u]}
        info = (await c.get("/info")).json()
        assert info["canary"] == {"model_version": v2, "percent": percent, "artifacts": str(bundle_dir_v2)}
        text = (await c.get("/metrics")).text
    for v in (v1, v2):
        assert f'simgr_requests_total{{endpoint="/recommend",model_version="{v}",status="200"}}' in text
    assert f'simgr_model_info{{model_version="{v2}",role="canary"}} 1.0' in text
    assert f"simgr_canary_percent {percent}" in text


async def test_without_user_id_the_request_id_decides(bundle_dir: Path, bundle_dir_v2: Path) -> None:
    app = create_app(make_settings(artifacts=bundle_dir, canary_artifacts=bundle_dir_v2, canary_percent=30,
                                   warmup=False))
    async with serve(app) as c:
        for n in range(40):
            rid = f"request-{n}"
            r = await c.post("/recommend", json={"history": ["item-3"]}, headers={"x-request-id": rid})
            want = version(bundle_dir_v2) if in_canary(rid, 30) else version(bundle_dir)
            assert r.json()["model_version"] == want


def test_hash_is_stable_and_monotone_in_percent() -> None:
    keys = [f"user-{u}" for u in range(2000)]
    assert not any(in_canary(k, 0) for k in keys)
    assert all(in_canary(k, 100) for k in keys)
    ten = {k for k in keys if in_canary(k, 10)}
    assert ten <= {k for k in keys if in_canary(k, 25)}  # raising the share only adds users
    assert in_canary("user-42", 50) == in_canary("user-42", 50)


async def test_canary_pointer_is_followed_and_cleared(bundle_dir: Path, bundle_dir_v2: Path, tmp_path: Path) -> None:
    from model.export.release import rollback

    root = tmp_path / "root"
    publish(bundle_dir, root)
    publish(bundle_dir_v2, root, pointer="CANARY")
    app = create_app(make_settings(root=root, canary_percent=100, follow_interval_s=30, warmup=False))
    async with serve(app) as c:
        r = await c.post("/recommend", json={"user_id": "u1", "history": ["item-1"]})
        assert r.json()["model_version"] == version(bundle_dir_v2)
        rollback(root, pointer="CANARY")
        await app.state.follower.sync()
        assert (await c.get("/info")).json()["canary"] is None
        r = await c.post("/recommend", json={"user_id": "u1", "history": ["item-1"]})
        assert r.json()["model_version"] == version(bundle_dir)
