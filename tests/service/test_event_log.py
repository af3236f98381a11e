"""Every accepted POST /events lands in the durable interaction log (Redis Stream, or the journal in
SIMGR_STATE_DIR); a refused append answers 503 and stores nothing; ``simgr events export`` writes the log
in the ``events`` source format."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from svc_helpers import make_settings, serve

from service.app import create_app
from service.cli.main import main
from service.durable_log import open_log

pytestmark = pytest.mark.anyio


async def post_events(bundle_dir: Path, settings_kw: dict, batches: list[tuple[str, list[str]]]) -> list[int]:
    app = create_app(make_settings(artifacts=bundle_dir, warmup=False, **settings_kw))
    codes = []
    async with serve(app) as c:
        for user, items in batches:
            r = await c.post("/events", json={"user_id": user, "item_ids": items})
            codes.append(r.status_code)
    return codes


def exported(capsys: pytest.CaptureFixture, *args: str) -> tuple[dict, list[dict]]:
    assert main(["--log-level", "WARNING", "events", "export", *args]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return result, pq.read_table(result["out"]).to_pylist()


async def test_events_go_to_the_redis_stream_and_export(bundle_dir: Path, redis_url: str, redis_prefix: str,
                                                        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    batches = [("alice", ["item-1", "item-2"]), ("bob", ["item-3", "brand-new"]), ("alice", ["item-4"])]
    kw = {"redis_url": redis_url, "redis_prefix": redis_prefix + "sess:", "event_log_prefix": redis_prefix}
    assert await post_events(bundle_dir, kw, batches) == [200, 200, 200]
    log = open_log(name="events", redis_url=redis_url, state_dir=None, redis_prefix=redis_prefix)
    entries = await log.read("0")
    await log.close()
    assert [(e.record["user_id"], e.record["item_ids"]) for e in entries] == batches  # unknown items kept too
    times = [e.record["ts"] for e in entries]
    assert times == sorted(times)

    result, rows = await asyncio.to_thread(exported, capsys, "--redis", redis_url, "--prefix", redis_prefix, "--out", str(tmp_path / "e.parquet"))
    assert result["entries"] == 3
    assert [(r["user_id"], r["item_id"]) for r in rows] == [
        ("alice", "item-1"), ("alice", "item-2"), ("bob", "item-3"), ("bob", "brand-new"), ("alice", "item-4")]
    assert rows[0]["timestamp"] == times[0]
    _, since = await asyncio.to_thread(exported, capsys, "--redis", redis_url, "--prefix", redis_prefix, "--out", str(tmp_path / "s.parquet"),
                        "--since", str(times[2]))
    assert [(r["user_id"], r["item_id"]) for r in since] == [("alice", "item-4")]


async def test_without_redis_the_journal_in_state_dir(bundle_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    state = tmp_path / "state"
    assert await post_events(bundle_dir, {"state_dir": state}, [("carol", ["item-7", "item-8"])]) == [200]
    lines = [json.loads(x) for x in (state / "events.jsonl").read_text().splitlines()]
    assert [(x["user_id"], x["item_ids"]) for x in lines] == [("carol", ["item-7", "item-8"])]
    _, rows = await asyncio.to_thread(exported, capsys, "--journal", str(state / "events.jsonl"), "--out", str(tmp_path / "j.parquet"))
    assert [(r["user_id"], r["item_id"]) for r in rows] == [("carol", "item-7"), ("carol", "item-8")]


async def test_refused_append_is_a_503_that_stores_nothing(bundle_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    app = create_app(make_settings(artifacts=bundle_dir, warmup=False, state_dir=blocker))
    async with serve(app) as c:
        r = await c.post("/events", json={"user_id": "dave", "item_ids": ["item-1"]})
        assert r.status_code == 503, r.text
        assert r.json()["error_type"] == "event_log_unavailable"
        session = await c.get("/sessions/dave")
        assert session.json()["items"] == []  # the session did not take an event the log refused


def test_export_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cases = [
        ["--out", str(tmp_path / "e.parquet")],
        ["--journal", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "e.parquet")],
        ["--journal", str(tmp_path), "--redis", "redis://x", "--out", str(tmp_path / "e.parquet")],
        ["--redis", "redis://127.0.0.1:1/0", "--out", str(tmp_path / "e.parquet")],
        ["--redis", "redis://127.0.0.1:1/0", "--out", str(tmp_path / "e.parquet"), "--since", "last tuesday"],
    ]
    for args in cases:
        assert main(["events", "export", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("simgr: error: ")
        assert err.count("\n") == 1
    assert not (tmp_path / "e.parquet").exists()
    assert not list(tmp_path.glob(".*.tmp"))
