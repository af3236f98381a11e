"""Hot reload: zero failed requests under concurrent load over a real socket; a bad bundle leaves the
old one serving and answers the table's error; SIGHUP reloads the bundle directory."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from pathlib import Path

import httpx
import pytest
from svc_helpers import UvicornThread, make_settings, serve

from service.app import create_app

pytestmark = pytest.mark.anyio

ADMIN_KEY = "reload-admin-key-0123"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def version(bundle_dir: Path) -> str:
    return str(json.loads((bundle_dir / "manifest.json").read_text())["model_version"])


async def test_reload_under_load_has_zero_failures(bundle_dir: Path, bundle_dir_v2: Path) -> None:
    v1, v2 = version(bundle_dir), version(bundle_dir_v2)
    assert v1 != v2
    app = create_app(make_settings(artifacts=bundle_dir, max_batch_size=8, admin_keys=ADMIN_KEY))
    with UvicornThread(app) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30, headers=ADMIN) as c:
            stop = asyncio.Event()
            statuses: list[int] = []
            versions: set[str] = set()

            async def client(u: int) -> None:
                while not stop.is_set():
                    r = await c.post("/recommend", json={"history": [f"item-{u}", f"item-{u + 1}"], "k": 5})
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        versions.add(r.json()["model_version"])
                        assert len(r.json()["items"]) == 5

            clients = [asyncio.ensure_future(client(u)) for u in range(6)]
            await asyncio.sleep(0.3)
            for target in (bundle_dir_v2, bundle_dir, bundle_dir_v2):
                r = await c.post("/admin/reload", json={"artifacts": str(target)})
                assert r.status_code == 200, r.text
                assert r.json()["model_version"] == version(target)
                await asyncio.sleep(0.2)
            stop.set()
            await asyncio.gather(*clients)
            info = (await c.get("/info")).json()
    assert len(statuses) > 20
    assert set(statuses) == {200}
    assert versions == {v1, v2}
    assert info["model_version"] == v2


async def test_bad_bundle_keeps_old_model(bundle_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(bundle_dir, broken)
    (broken / "manifest.json").write_text("{not json")
    incomplete = tmp_path / "incomplete"
    shutil.copytree(bundle_dir, incomplete)
    manifest = json.loads((incomplete / "manifest.json").read_text())
    del manifest["model_version"]
    (incomplete / "manifest.json").write_text(json.dumps(manifest))
    (incomplete / "index.faiss").write_bytes(b"garbage")
    flipped = tmp_path / "flipped"  # one byte of the item table changed after export
    shutil.copytree(bundle_dir, flipped)
    items = bytearray((flipped / "items.jsonl").read_bytes())
    items[10] ^= 0x01
    (flipped / "items.jsonl").write_bytes(bytes(items))
    app = create_app(make_settings(artifacts=bundle_dir, warmup=False, admin_keys=ADMIN_KEY))
    async with serve(app, headers=ADMIN) as c:
        for target in (tmp_path / "missing", broken, incomplete, tmp_path / "broken" / "manifest.json", flipped):
            r = await c.post("/admin/reload", json={"artifacts": str(target)})
            assert r.status_code == 422, r.text
            assert r.json()["error_type"] == "bad_bundle", r.text
            assert version(bundle_dir) in r.json()["error"]  # says what keeps serving
        assert "sha256 differs from the manifest" in r.json()["error"]  # the flipped byte, by name
        r = await c.post("/recommend", json={"history": ["item-1"]})
        assert r.status_code == 200
        assert r.json()["model_version"] == version(bundle_dir)
        metrics = (await c.get("/metrics")).text
        assert 'simgr_reloads_total{outcome="rejected"} 5.0' in metrics


async def test_crashing_loader_is_reload_failed_and_concurrent_reload_is_409() -> None:
    import threading

    from service.dummy import DummyEncoder

    gate = threading.Event()
    calls = {"n": 0}

    def loader(_: Path | None) -> DummyEncoder:
        calls["n"] += 1
        if calls["n"] == 2:
            gate.wait(timeout=30)
            raise MemoryError("simulated")
        return DummyEncoder.random(seed=calls["n"])

    app = create_app(make_settings(warmup=False, admin_keys=ADMIN_KEY), loader=loader)
    async with serve(app, headers=ADMIN) as c:
        first = asyncio.ensure_future(c.post("/admin/reload"))
        await asyncio.sleep(0.1)
        second = await c.post("/admin/reload")
        assert second.status_code == 409
        assert second.json()["error_type"] == "reload_in_progress"
        gate.set()
        r = await first
        assert r.status_code == 500
        assert r.json()["error_type"] == "reload_failed"
        assert (await c.post("/recommend", json={"history": ["item-1"]})).status_code == 200
        ok = await c.post("/admin/reload")
        assert ok.status_code == 200
        assert ok.json()["model_version"] != ok.json()["previous_version"]


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
async def test_sighup_reloads_the_bundle_directory(bundle_dir: Path, bundle_dir_v2: Path, tmp_path: Path) -> None:
    live = tmp_path / "live"
    shutil.copytree(bundle_dir, live)
    app = create_app(make_settings(artifacts=live, warmup=False))
    async with serve(app) as c:
        assert (await c.get("/info")).json()["model_version"] == version(bundle_dir)
        shutil.rmtree(live)
        shutil.copytree(bundle_dir_v2, live)  # a new export lands in the same directory
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(200):
            if (await c.get("/info")).json()["model_version"] == version(bundle_dir_v2):
                break
            await asyncio.sleep(0.05)
        assert (await c.get("/info")).json()["model_version"] == version(bundle_dir_v2)
