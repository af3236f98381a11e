"""Publish, follow and roll back: a server started with --root serves ROOT/CURRENT and follows it,
by polling alone or nudged over Redis; a broken version never replaces the one serving."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest
from svc_helpers import make_settings, serve

from model.errors import SimGRError
from model.export.release import publish, read_pointer, rollback
from service.app import create_app
from service.cli.main import main

pytestmark = pytest.mark.anyio


def version(bundle_dir: Path) -> str:
    return str(json.loads((bundle_dir / "manifest.json").read_text())["model_version"])


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict | str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, (json.loads(out.strip().splitlines()[-1]) if rc == 0 else err)


async def served(c: httpx.AsyncClient) -> str:
    return str((await c.get("/info")).json()["model_version"])


async def wait_for(c: httpx.AsyncClient, want: str, timeout_s: float) -> float:
    """Seconds until /info serves ``want``; fails past the deadline."""
    t0 = time.monotonic()
    while (got := await served(c)) != want:
        assert time.monotonic() - t0 < timeout_s, f"still serving {got}, not {want}, after {timeout_s} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - t0


def test_publish_and_rollback_move_the_pointer(bundle_dir: Path, bundle_dir_v2: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    v1, v2 = version(bundle_dir), version(bundle_dir_v2)
    rc, out = cli(capsys, "publish", str(bundle_dir), "--root", str(root))
    assert rc == 0
    assert isinstance(out, dict)
    assert (out["model_version"], out["previous_version"], out["nudged"]) == (v1, None, False)
    rc, out = cli(capsys, "publish", str(bundle_dir_v2), "--root", str(root), "--link")
    assert rc == 0
    assert read_pointer(root) == root / "versions" / v2
    assert os.readlink(root / "CURRENT") == f"versions/{v2}"  # relative: the root can move or be mounted
    assert sorted(p.name for p in (root / "versions").iterdir()) == sorted([v1, v2])
    assert (root / "versions" / v2 / "items.jsonl").stat().st_ino == (bundle_dir_v2 / "items.jsonl").stat().st_ino
    rc, out = cli(capsys, "rollback", "--root", str(root))
    assert rc == 0
    assert isinstance(out, dict)
    assert (out["model_version"], out["previous_version"]) == (v1, v2)
    assert read_pointer(root) == root / "versions" / v1
    rc, err = cli(capsys, "rollback", "--root", str(root))
    assert rc == 2
    assert "simgr: error:" in str(err)
    assert "nothing to roll back to" in str(err)
    assert read_pointer(root) == root / "versions" / v1
    assert [json.loads(line)["action"] for line in (root / "history.jsonl").read_text().splitlines()] == [
        "publish", "publish", "rollback"]


def test_publish_refuses_a_corrupted_bundle_and_changes_nothing(bundle_dir: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    root = tmp_path / "root"
    publish(bundle_dir, root)
    bad = tmp_path / "bad"
    shutil.copytree(bundle_dir, bad)
    (bad / "popularity.json").write_text("[]\n")
    rc, err = cli(capsys, "publish", str(bad), "--root", str(root))
    assert rc == 2
    assert "popularity.json" in str(err)
    assert read_pointer(root) == root / "versions" / version(bundle_dir)
    rc, err = cli(capsys, "publish", str(tmp_path / "nothing"), "--root", str(root))
    assert rc == 2
    assert "manifest.json" in str(err)
    with pytest.raises(SimGRError, match="no CANARY pointer"):
        rollback(root, pointer="CANARY")


async def test_follow_by_polling_publish_rollback_and_a_broken_version(
        bundle_dir: Path, bundle_dir_v2: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    v1, v2 = version(bundle_dir), version(bundle_dir_v2)
    publish(bundle_dir, root)
    app = create_app(make_settings(root=root, follow_interval_s=0.1, warmup=False))
    async with serve(app) as c:
        info = (await c.get("/info")).json()
        assert (info["model_version"], info["root"]) == (v1, str(root))
        publish(bundle_dir_v2, root)
        await wait_for(c, v2, timeout_s=20)
        assert f'simgr_model_info{{model_version="{v2}",role="primary"}} 1.0' in (await c.get("/metrics")).text
        rollback(root)
        await wait_for(c, v1, timeout_s=20)
        # a version whose files were changed after publishing is refused; v1 keeps serving
        (root / "versions" / v2 / "items.jsonl").write_text('{"idx": 0, "item_id": "x", "sid": []}\n')
        publish(bundle_dir_v2, root, verify="off")  # the pointer moves to the damaged copy
        await app.state.follower.sync()
        assert await served(c) == v1
        assert 'simgr_reloads_total{outcome="rejected"} 1.0' in (await c.get("/metrics")).text
        r = await c.post("/recommend", json={"history": ["item-1"]})
        assert (r.status_code, r.json()["model_version"]) == (200, v1)


async def test_follow_is_nudged_over_redis(bundle_dir: Path, bundle_dir_v2: Path, tmp_path: Path,
                                           redis_url: str, redis_prefix: str) -> None:
    root = tmp_path / "root"
    v1, v2 = version(bundle_dir), version(bundle_dir_v2)
    publish(bundle_dir, root)
    channel = f"{redis_prefix}rollout-{uuid.uuid4().hex[:6]}"
    settings = make_settings(root=root, follow_interval_s=600, warmup=False, redis_url=redis_url,
                             redis_prefix=redis_prefix, rollout_channel=channel)
    app = create_app(settings)
    async with serve(app) as c:
        follower = app.state.follower
        deadline = time.monotonic() + 10
        while not await _subscribed(redis_url, channel):
            assert time.monotonic() < deadline, "the follower never subscribed"
            await asyncio.sleep(0.02)
        rc = await asyncio.to_thread(main, ["publish", str(bundle_dir_v2), "--root", str(root),
                                            "--redis-url", redis_url, "--channel", channel])
        assert rc == 0
        seconds = await wait_for(c, v2, timeout_s=20)  # far below the 600 s poll: the nudge did it
        assert follower.nudges >= 1
        rc = await asyncio.to_thread(main, ["rollback", "--root", str(root), "--redis-url", redis_url,
                                            "--channel", channel])
        assert rc == 0
        await wait_for(c, v1, timeout_s=20)
    assert seconds < 20


async def _subscribed(url: str, channel: str) -> bool:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        counts = await client.pubsub_numsub(channel)
        return bool(counts and counts[0][1] >= 1)
    finally:
        await client.aclose()


async def test_serve_root_without_current_is_a_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = cli(capsys, "serve", "--root", str(tmp_path / "empty"))
    assert rc == 2
    assert "no CURRENT pointer; publish a bundle first" in str(err)
