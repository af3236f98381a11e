"""`simgr serve` flags (one per setting, flag > env > default) and a real server process: SIGTERM
lets in-flight requests finish."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from svc_helpers import free_port

from model.errors import SimGRError
from model.training.allocator import Malloc, installed
from service.cli import serve as serve_cmd
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="simgr serve")
    serve_cmd.add_arguments(p)
    return p


def test_every_setting_has_a_flag_twin() -> None:
    flags = parser()._option_string_actions
    for name in Settings.model_fields:
        assert "--" + name.replace("_", "-") in flags, name
    assert "--no-warmup" in flags  # booleans get --x / --no-x


def test_flag_beats_env_beats_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert serve_cmd.settings_from_args(parser().parse_args([])).max_batch_size == 32
    monkeypatch.setenv("SIMGR_MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("SIMGR_WARMUP", "false")
    monkeypatch.setenv("SIMGR_API_KEYS", "key-one-123, key-two-456")
    s = serve_cmd.settings_from_args(parser().parse_args([]))
    assert s.max_batch_size == 7
    assert s.warmup is False
    assert s.api_keys == ("key-one-123", "key-two-456")
    s = serve_cmd.settings_from_args(parser().parse_args(["--max-batch-size", "9", "--warmup", "--artifacts",
                                                          str(tmp_path), "--encoder", "noop"]))
    assert s.max_batch_size == 9
    assert s.warmup is True
    assert s.artifacts == tmp_path
    assert s.encoder == "noop"
    assert "key-one" not in repr(s)  # keys never in reprs / logs


def test_bad_values_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(SimGRError, match="--max-batch-size"):
        serve_cmd.settings_from_args(parser().parse_args(["--max-batch-size", "0"]))
    with pytest.raises(SimGRError, match="at least 8"):
        serve_cmd.settings_from_args(parser().parse_args(["--api-keys", "short"]))
    with pytest.raises(SystemExit):
        parser().parse_args(["--encoder", "gpt"])
    with pytest.raises(SimGRError, match="--artifacts"):
        serve_cmd.run(parser().parse_args([]))
    with pytest.raises(SimGRError, match="not an export bundle"):
        serve_cmd.run(parser().parse_args(["--artifacts", str(tmp_path)]))


def test_broken_bundle_is_a_user_error_at_startup(bundle_dir: Path, tmp_path: Path) -> None:
    import json
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bundle_dir, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    del manifest["model_version"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    args = parser().parse_args(["--artifacts", str(broken), "--port", str(free_port()), "--log-level", "error"])
    with pytest.raises(SimGRError, match=r"cannot serve: .*broken"):
        serve_cmd.run(args)


SERVE = "import sys; from service.cli.main import main; sys.exit(main(['serve', *sys.argv[1:]]))"  # the real CLI


def start_server(bundle_dir: Path, *flags: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`simgr serve` of ``bundle_dir`` (noop encoder, default log level: the CLI path) as a real process,
    once it answers /readyz: (the process, its base URL)."""
    port = free_port()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SIMGR_") and k != "LD_PRELOAD"}
    cmd = [sys.executable, "-c", SERVE, "--artifacts", str(bundle_dir), "--port", str(port), "--encoder", "noop",
           "--no-warmup", *flags]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=base_env | {"SIMGR_NO_PROGRESS": "1"} | (env or {}),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out = proc.communicate()[0].decode()
            raise AssertionError(f"the server did not answer in time: {out}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM, then its output (killed if it does not stop within 30 s)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=30)[0].decode()
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0].decode()


@pytest.mark.parametrize("name", ["system", "tcmalloc"])
def test_the_server_reports_the_malloc_it_runs_on(bundle_dir: Path, name: Malloc) -> None:
    env = installed().get(name)
    if env is None:
        pytest.skip(f"{name} is not installed (scripts/ensure_packages.sh installs it on Debian)")
    proc, base = start_server(bundle_dir, env=env)  # the image's way: LD_PRELOAD=libtcmalloc_minimal.so.4
    try:
        assert httpx.get(f"{base}/info", timeout=10).json()["malloc"] == name
    finally:
        out = stop(proc)
    assert re.search(rf"INFO service\.app: ready: serving \S+ \(malloc: {name}\)", out), out


def test_sigterm_finishes_in_flight_requests(bundle_dir: Path) -> None:
    proc, base = start_server(bundle_dir, "--noop-sleep-ms", "400", "--max-batch-size", "2")
    try:

        async def in_flight() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=base, timeout=30) as c:
                reqs = [asyncio.ensure_future(c.post("/recommend", json={"history": [f"item-{i}"]})) for i in range(4)]
                await asyncio.sleep(0.2)  # all sent; the noop model takes 400 ms per batch of 2
                proc.send_signal(signal.SIGTERM)
                return list(await asyncio.gather(*reqs))

        rs = asyncio.run(in_flight())
        assert [r.status_code for r in rs] == [200] * 4
        assert all(r.json()["model_version"].endswith("-noop") for r in rs)
        # uvicorn re-raises the captured SIGTERM after its graceful shutdown, so -15 is a clean stop
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        out = proc.stdout.read().decode() if proc.stdout else ""
        assert "Traceback" not in out, out
        assert "ERROR" not in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
