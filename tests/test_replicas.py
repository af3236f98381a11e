"""Several replicas behind nginx on this machine (deploy/replicas.py): the nginx configs parse, and the
full run (kill a replica, publish, roll back under load) has zero failed requests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NGINX_DIR = ROOT / "deploy" / "nginx"


def nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if found is None:
        msg = "nginx not found (scripts/ensure_nginx.sh installs Debian's nginx-light)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg + "; CI requires it")
        pytest.skip(msg)
    return found


def nginx_test(conf: Path, prefix: Path) -> None:
    out = subprocess.run([nginx(), "-t", "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def test_compose_nginx_conf_parses(tmp_path: Path) -> None:
    """The compose load balancer's config, with what only Docker provides swapped for local stand-ins:
    the `api` DNS name (and `resolve`, nginx >= 1.27.3) for 127.0.0.1, the mounted include for its file."""
    conf = (NGINX_DIR / "nginx.conf").read_text()
    local = (conf.replace("server api:8000 resolve", "server 127.0.0.1:8000")
             .replace("/etc/nginx/simgr-locations.conf", str(NGINX_DIR / "simgr-locations.conf"))
             .replace("pid /tmp/nginx.pid;", f"pid {tmp_path / 'nginx.pid'};"))
    assert local.count("127.0.0.1:8000") == 1
    (tmp_path / "nginx.conf").write_text(local)
    nginx_test(tmp_path / "nginx.conf", tmp_path)


def test_local_nginx_conf_parses_and_fronts_every_replica(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import replicas
    finally:
        sys.path.pop(0)
    conf = replicas.nginx_conf(tmp_path, 18080, [18001, 18002, 18003])
    text = conf.read_text()
    assert [f"server 127.0.0.1:{p}" in text for p in (18001, 18002, 18003)] == [True] * 3
    assert "listen 127.0.0.1:18080;" in text
    nginx_test(conf, tmp_path)


@pytest.mark.slow
def test_kill_publish_rollback_under_load_has_zero_failures() -> None:
    nginx()
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not found")
    out = subprocess.run([sys.executable, str(ROOT / "deploy" / "replicas.py"), "--phase-s", "1.5"],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"requests", "failures", "killed_replica", "publish_converge_s", "rollback_converge_s",
            "versions_seen"} <= set(result)
    assert result["failures"] == 0
    assert result["stale_answers"] == 0
    assert result["requests"] >= 100
    assert len(result["versions_seen"]) == 2
    assert 0 <= result["killed_replica"] < 3
    # noticed within the follow interval (a Redis nudge is immediate), plus loading and warming a tiny bundle
    assert 0 < result["publish_converge_s"] <= result["follow_interval_s"] + 4.0
    assert 0 < result["rollback_converge_s"] <= result["follow_interval_s"] + 4.0
