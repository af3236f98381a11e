"""``simgr recommend-batch``: the same top-k as /recommend (one encode-and-search path), resume after a
SIGKILL without duplicate rows, and two shards that together equal one run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from svc_helpers import make_settings, serve

from service.app import create_app
from service.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def events_log(path: Path, *, users: int, seed: int = 0) -> Path:
    """Each user 2..12 interactions with the tiny bundle's items (and one item it lacks)."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {"user_id": [], "item_id": [], "timestamp": []}
    for u in range(users):
        for j in range(int(rng.integers(2, 13))):
            rows["user_id"].append(f"user-{u}")
            rows["item_id"].append(f"item-{int(rng.integers(0, 200))}" if j != 1 else "not-in-bundle")
            rows["timestamp"].append(1_700_000_000 + 1000 * u + j)
    pq.write_table(pa.table(rows), path)
    return path


def batch(out: Path, bundle: Path, log: Path, *extra: str) -> dict:
    args = ["--log-level", "WARNING", "recommend-batch", "--artifacts", str(bundle), "--histories", str(log),
            "--out", str(out), "--k", "10", *extra]
    assert main(args) == 0
    return {}


def read(out: Path) -> list[dict]:
    return sorted(pq.read_table(out).to_pylist(), key=lambda r: (r["user_id"], r["rank"]))


@pytest.mark.anyio
async def test_same_top_k_as_recommend(bundle_dir: Path, tmp_path: Path) -> None:
    log = events_log(tmp_path / "log.parquet", users=12)
    batch(tmp_path / "recs.parquet", bundle_dir, log, "--exclude-seen", "--batch-size", "5")
    rows = read(tmp_path / "recs.parquet")
    history = pq.read_table(log).to_pylist()
    app = create_app(make_settings(artifacts=bundle_dir, warmup=False))
    async with serve(app) as c:
        for u in range(12):
            user = f"user-{u}"
            items = [r["item_id"] for r in history if r["user_id"] == user and r["item_id"] != "not-in-bundle"]
            items = list(dict.fromkeys(items))  # prepare-style: a repeated pair counts once
            r = await c.post("/recommend", json={"history": items, "k": 10, "exclude_seen": True})
            assert r.status_code == 200, r.text
            served = r.json()["items"]
            mine = [x for x in rows if x["user_id"] == user]
            assert [x["item_id"] for x in mine] == [x["item_id"] for x in served]
            np.testing.assert_allclose([x["score"] for x in mine], [x["score"] for x in served], atol=1e-5)
            assert [x["rank"] for x in mine] == list(range(1, 11))


def test_resume_after_kill_writes_no_duplicates(bundle_dir: Path, tmp_path: Path) -> None:
    log = events_log(tmp_path / "log.parquet", users=120)
    out = tmp_path / "recs.parquet"
    cmd = [sys.executable, "-m", "service.cli.main", "--log-level", "WARNING", "recommend-batch",
           "--artifacts", str(bundle_dir), "--histories", str(log), "--out", str(out), "--k", "10",
           "--chunk-users", "2", "--batch-size", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SIMGR_NO_PROGRESS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "part-00002.parquet").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=30)
    done = sorted(p.name for p in out.glob("part-*.parquet"))
    assert 3 <= len(done) < 60  # killed mid-run
    assert not (out / "_manifest.json").exists()
    before = {name: (out / name).stat().st_mtime_ns for name in done}

    batch(out, bundle_dir, log, "--chunk-users", "2", "--batch-size", "2")
    assert all((out / name).stat().st_mtime_ns == before[name] for name in done)  # finished parts skipped
    rows = read(out)
    keys = [(r["user_id"], r["rank"]) for r in rows]
    assert len(keys) == len(set(keys)) == 120 * 10
    batch(tmp_path / "clean.parquet", bundle_dir, log, "--chunk-users", "2", "--batch-size", "2")
    assert rows == read(tmp_path / "clean.parquet")
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["rows"] == 1200
    assert len(manifest["parts"]) == 60


def test_two_shards_equal_one_run(bundle_dir: Path, tmp_path: Path) -> None:
    log = events_log(tmp_path / "log.parquet", users=50)
    users = tmp_path / "users.txt"
    users.write_text("".join(f"user-{u}\n" for u in range(0, 50, 2)) + "nobody\n")
    common = ["--chunk-users", "4", "--users", str(users), "--filter", '{"exclude": ["item-0", "item-1"]}']
    batch(tmp_path / "one.parquet", bundle_dir, log, *common)
    sharded = tmp_path / "sharded.parquet"
    batch(sharded, bundle_dir, log, *common, "--shard", "0/2")
    assert not (sharded / "_manifest.json").exists()
    batch(sharded, bundle_dir, log, *common, "--shard", "1/2")
    assert (sharded / "_manifest.json").is_file()
    one, two = read(tmp_path / "one.parquet"), read(sharded)
    assert one == two
    assert {r["user_id"] for r in one} == {f"user-{u}" for u in range(0, 50, 2)}
    assert not {"item-0", "item-1"} & {r["item_id"] for r in one}


def test_bad_input_is_one_line(bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    log = events_log(tmp_path / "log.parquet", users=5)
    batch(tmp_path / "r.parquet", bundle_dir, log, "--chunk-users", "2")
    capsys.readouterr()
    cases = [["--shard", "2/2"], ["--shard", "x"], ["--filter", '{"allow": 3}'], ["--filter", '{"nope": []}'],
             ["--k", "0"], ["--chunk-users", "3"]]  # the last changes a finished run's settings
    for extra in cases:
        args = ["recommend-batch", "--artifacts", str(bundle_dir), "--histories", str(log),
                "--out", str(tmp_path / "r.parquet"), "--chunk-users", "2", *extra]
        assert main(args) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("simgr: error: ")
        assert err.count("\n") == 1
