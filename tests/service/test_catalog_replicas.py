"""Catalogue changes through the Redis Stream: two `simgr serve` processes converge, a restart replays
the stream, and with Redis down PUT/DELETE answer 503 and change nothing."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from svc_helpers import UvicornThread, free_port, make_settings, redis_server

from service.app import create_app

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "admin-key-123456"
H = {"Authorization": f"Bearer {ADMIN}"}
SERVE = "import sys; from service.cli.main import main; sys.exit(main(['serve', *sys.argv[1:]]))"


@contextlib.contextmanager
def serve_process(bundle: Path, redis_url: str, prefix: str) -> Iterator[str]:
    """A real `simgr serve` process sharing ``redis_url``; yields its base URL once ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIMGR_")} | {
        "SIMGR_NO_PROGRESS": "1", "SIMGR_ADMIN_KEYS": ADMIN}
    cmd = [sys.executable, "-c", SERVE, "--artifacts", str(bundle), "--port", str(port), "--redis-url", redis_url,
           "--redis-prefix", prefix, "--log-level", "warning", "--no-warmup"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def recommends(base: str, item: str) -> bool:
    r = httpx.post(f"{base}/recommend", json={"history": ["i0"], "k": 5, "allow": [item]}, headers=H, timeout=10)
    return r.status_code == 200 and [it["item_id"] for it in r.json()["items"]] == [item]


def test_two_serve_processes_converge(quant_bundle_dir: Path, redis_url: str, redis_prefix: str) -> None:
    with serve_process(quant_bundle_dir, redis_url, redis_prefix) as a, \
            serve_process(quant_bundle_dir, redis_url, redis_prefix) as b:
        r = httpx.put(f"{a}/items", json={"items": [{"item_id": "rep1", "title": "Lab glove box"}]}, headers=H,
                      timeout=60)
        assert r.status_code == 200, r.text
        acked = time.monotonic()
        while not recommends(b, "rep1"):
            assert time.monotonic() - acked < 2.0, "replica B did not see the upsert within 2 s"
            time.sleep(0.02)
        assert httpx.get(f"{b}/items/rep1", headers=H, timeout=10).json()["sid"] == r.json()["items"][0]["sid"]
        assert httpx.delete(f"{b}/items/rep1", headers=H, timeout=60).status_code == 200
        gone = time.monotonic()
        while recommends(a, "rep1"):
            assert time.monotonic() - gone < 2.0, "replica A still recommends a retired item"
            time.sleep(0.02)
        assert "simgr_catalog_follower_lag_seconds" in httpx.get(f"{a}/metrics", timeout=10).text


def test_restart_replays_the_stream(quant_bundle_dir: Path, redis_url: str, redis_prefix: str) -> None:
    settings = make_settings(artifacts=quant_bundle_dir, redis_url=redis_url, redis_prefix=redis_prefix,
                             admin_keys=(ADMIN,))
    with UvicornThread(create_app(settings)) as srv, httpx.Client(base_url=srv.base_url, headers=H, timeout=60) as c:
        sid = c.put("/items", json={"items": [{"item_id": "s1", "title": "Burner stand"}]}).json()["items"][0]["sid"]
        assert c.delete("/items/i6").status_code == 200
    import redis

    assert redis.Redis.from_url(redis_url).xlen(f"{redis_prefix}log:catalog") == 2
    with UvicornThread(create_app(settings)) as srv, httpx.Client(base_url=srv.base_url, headers=H, timeout=60) as c:
        assert c.get("/items/s1").json()["sid"] == sid
        assert c.get("/items/i6").status_code == 404


def test_redis_down_is_503_and_changes_nothing(quant_bundle_dir: Path) -> None:
    with redis_server() as (url, proc):
        settings = make_settings(artifacts=quant_bundle_dir, redis_url=url, redis_timeout_ms=200,
                                 redis_connect_timeout_ms=200, redis_retry_s=0.2, admin_keys=(ADMIN,))
        with UvicornThread(create_app(settings)) as srv, httpx.Client(base_url=srv.base_url, headers=H, timeout=60) as c:
            assert c.put("/items", json={"items": [{"item_id": "d1", "title": "Flask"}]}).status_code == 200
            proc.kill()
            proc.wait(timeout=10)
            r = c.put("/items", json={"items": [{"item_id": "d2", "title": "Beaker rack"}]})
            assert r.status_code == 503
            assert r.json()["error_type"] == "catalog_unavailable"
            r = c.delete("/items/d1")
            assert r.status_code == 503
            assert c.get("/items/d2").status_code == 404
            assert c.get("/items/d1").status_code == 200
            assert recommends(srv.base_url, "d1")
            assert not recommends(srv.base_url, "d2")
            assert c.post("/recommend", json={"history": ["i0"], "k": 3}).status_code == 200
