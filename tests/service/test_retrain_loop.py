"""The serve -> log -> retrain loop end to end, on tiny data with a real Redis and a real socket:

1. train and export a bundle from an events log, serve it;
2. new users post events (walking the catalogue backwards), ending with an item the served catalogue
   does not have yet;
3. ``events export`` the Redis Stream, ``prepare --source events`` it merged with the original log,
   train (validated, then ``--final``), export, ``POST /admin/reload``;
4. the server reports the new model version, knows the new item, and recommends it to those users.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from svc_helpers import UvicornThread, make_settings

from model.data.synthetic import random_sids
from service.app import create_app
from service.cli.main import main

TINY = ["--backbone", "tiny", "--batch-size", "16", "--micro-batch-size", "16", "--lr", "0.01", "--seed", "0",
        "--epochs", "6", "--patience", "9"]
K = ["--min-user-interactions", "3", "--min-item-interactions", "1"]
ADMIN_KEY = "retrain-loop-admin-key"


def original_log(path: Path) -> Path:
    """40 users walk 20 items in order (item i is followed by item i+1)."""
    rng = np.random.default_rng(0)
    rows: dict[str, list] = {"user_id": [], "item_id": [], "timestamp": []}
    for u in range(40):
        start = int(rng.integers(20))
        for j in range(int(rng.integers(5, 9))):
            rows["user_id"].append(f"old-{u}")
            rows["item_id"].append(f"i{(start + j) % 20}")
            rows["timestamp"].append(1_700_000_000 + 100 * u + j)
    pq.write_table(pa.table(rows), path)
    return path


def run(capsys: pytest.CaptureFixture, *args: str) -> dict:
    assert main(["--log-level", "WARNING", *args]) == 0, args
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def build(capsys: pytest.CaptureFixture, work: Path, logs: Path) -> Path:
    """prepare -> semantic IDs -> validated train -> final train -> export; returns the bundle."""
    data = work / "data"
    run(capsys, "prepare", "--source", "events", "--interactions", str(logs), "--out", str(data), *K)
    ids = [json.loads(x)["item_id"] for x in (data / "items.jsonl").read_text().splitlines()]
    # tiny stand-in for `simgr semantic-ids` (an RQ-VAE over item text): random unique IDs
    (data / "semantic_ids.json").write_text(json.dumps(dict(zip(ids, random_sids(len(ids), seed=1), strict=True))))
    run(capsys, "train", "--data", str(data), "--out", str(work / "validated"), *TINY)
    run(capsys, "train", "--final", "--from-run", str(work / "validated"), "--out", str(work / "final"))
    run(capsys, "export", "--run", str(work / "final"), "--out", str(work / "bundle"))
    return work / "bundle"


def test_serve_log_retrain_reload(tmp_path: Path, redis_url: str, redis_prefix: str,
                                  capsys: pytest.CaptureFixture) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    original_log(logs / "part-000-original.parquet")
    bundle_v1 = build(capsys, tmp_path / "v1", logs)
    settings = make_settings(artifacts=bundle_v1, redis_url=redis_url, redis_prefix=redis_prefix + "sess:",
                             event_log_prefix=redis_prefix, admin_keys=(ADMIN_KEY,))
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}  # reload needs an admin key (valid on data routes too)
    with UvicornThread(create_app(settings)) as server, \
            httpx.Client(base_url=server.base_url, timeout=60, headers=auth) as c:
        v1 = c.get("/info").json()["model_version"]
        rng = np.random.default_rng(1)
        for u in range(30):
            start = int(rng.integers(20))
            walk = [f"i{(start - j) % 20}" for j in range(4)]  # backwards: unlike any original user
            for item in [*walk, "new-item"]:  # one event per call, as a site would send them
                r = c.post("/events", json={"user_id": f"new-{u}", "item_ids": [item]})
                assert r.status_code == 200, r.text
            assert r.json()["unknown_items"] == ["new-item"]  # not in the served catalogue yet
        before = c.post("/recommend", json={"user_id": "new-0", "k": 5}).json()

        exported = run(capsys, "events", "export", "--redis", redis_url, "--prefix", redis_prefix,
                       "--out", str(logs / "part-001-served.parquet"))
        assert exported["rows"] == 150
        bundle_v2 = build(capsys, tmp_path / "v2", logs)
        data_v2 = json.loads((tmp_path / "v2" / "data" / "user_map.json").read_text())
        assert {f"new-{u}" for u in range(30)} <= set(data_v2)

        r = c.post("/admin/reload", json={"artifacts": str(bundle_v2)})
        assert r.status_code == 200, r.text
        assert r.json()["previous_version"] == v1
        v2 = r.json()["model_version"]
        assert v2 != v1
        assert r.json()["n_items"] == 21
        assert c.get("/info").json()["model_version"] == v2
        hits = 0
        for u in range(30):
            after = c.post("/recommend", json={"user_id": f"new-{u}", "k": 5}).json()
            assert after["model_version"] == v2
            assert len(after["history_used"]) == 4  # the session their events built
            hits += "new-item" in [x["item_id"] for x in after["items"]]
    assert "new-item" not in [x["item_id"] for x in before["items"]]
    assert hits >= 20, hits  # the retrained model learned what these users did next
