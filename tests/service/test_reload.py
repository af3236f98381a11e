"""Hot reload: zero failed requests under concurrent load over a real socket; a bad bundle leaves the
old one serving and answers the table's error; SIGHUP reloads the bundle directory."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
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

            async def answered(n: int) -> None:  # until n more responses came back (bounded)
                goal, deadline = len(statuses) + n, time.monotonic() + 60
                while len(statuses) < goal and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)

            clients = [asyncio.ensure_future(client(u)) for u in range(6)]
            await answered(12)
            for target in (bundle_dir_v2, bundle_dir, bundle_dir_v2):
                r = await c.post("/admin/reload", json={"artifacts": str(target)})
                assert r.status_code == 200, r.text
                assert r.json()["model_version"] == version(target)
                await answered(12)
            stop.set()
            await asyncio.gather(*clients)
            info = (await c.get("/info")).json()
    assert len(statuses) >= 48  # 12 answers before and after each of the three reloads
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
        deadline = time.monotonic() + 10
        while calls["n"] < 2 and time.monotonic() < deadline:  # the first reload is inside the loader
            await asyncio.sleep(0.01)
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


async def test_one_batch_mixing_two_bundles_answers_each_from_its_own(tmp_path: Path) -> None:
    """A request queued before a reload and one after it land in the same batch: each is scored by the
    bundle it started on (one forward per bundle), with that bundle's catalogue and version."""
    import numpy as np

    from index import ItemIndex
    from service.dummy import DummyEncoder

    encoders = {"a": DummyEncoder.random(seed=1), "b": DummyEncoder.random(seed=2)}
    for name, enc in encoders.items():  # each bundle directory holds its index, as export writes it
        (tmp_path / name).mkdir()
        ItemIndex.build(enc.embeddings).save(tmp_path / name / "index.faiss")
    # max_batch_size 2 and a 10 s flush timer: the first request waits until the second fills the batch
    settings = make_settings(artifacts=tmp_path / "a", warmup=False, max_batch_size=2, max_wait_ms=10_000,
                             admin_keys=ADMIN_KEY)
    app = create_app(settings, loader=lambda p: encoders[p.name])
    rec = app.state.recommender
    body = {"history": ["item-3", "item-7"], "k": 5}
    async with serve(app, headers=ADMIN) as c:
        first = asyncio.ensure_future(c.post("/recommend", json=body))
        deadline = time.monotonic() + 10
        while rec.batcher.queue_size < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert rec.batcher.queue_size == 1
        r = await c.post("/admin/reload", json={"artifacts": str(tmp_path / "b")})
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == encoders["b"].model_version
        second = await c.post("/recommend", json=body)
        first_r = await first
    assert rec.batcher.batches == 1
    assert encoders["a"].batch_sizes == [1]
    assert encoders["b"].batch_sizes == [1]
    for r, enc in ((first_r, encoders["a"]), (second, encoders["b"])):
        assert r.status_code == 200
        assert r.json()["model_version"] == enc.model_version
        q = enc.embeddings[[3, 7]].astype(np.float64).mean(axis=0)
        order = np.argsort(-(enc.embeddings @ q.astype(np.float32)), kind="stable")
        expected = [i for i in order if i not in (3, 7)][:5]  # exclude_seen: the history is not recommended
        assert [i["item_id"] for i in r.json()["items"]] == [f"item-{i}" for i in expected]
    assert [i["item_id"] for i in first_r.json()["items"]] != [i["item_id"] for i in second.json()["items"]]
