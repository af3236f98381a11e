"""The living catalogue over real HTTP with the fsynced journal: upsert -> recommendable, retire -> gone,
idempotence, collisions, filters, restart replay, and bad input that changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from svc_helpers import UvicornThread, make_settings

from service.app import create_app

ADMIN = "admin-key-123456"
DATA = "data-key-1234567"
H = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def server(quant_bundle_dir: Path, tmp_path: Path) -> Iterator[UvicornThread]:
    settings = make_settings(artifacts=quant_bundle_dir, state_dir=tmp_path / "state", admin_keys=(ADMIN,),
                             api_keys=(DATA,))
    with UvicornThread(create_app(settings)) as srv:
        yield srv


def client(srv: UvicornThread) -> httpx.Client:
    return httpx.Client(base_url=srv.base_url, headers=H, timeout=60)


def rec_ids(c: httpx.Client, **body: Any) -> list[str]:
    r = c.post("/recommend", json=body)
    assert r.status_code == 200, r.text
    return [it["item_id"] for it in r.json()["items"]]


def journal_lines(tmp_path: Path) -> int:
    path = tmp_path / "state" / "catalog.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_upsert_recommend_retire(server: UvicornThread, tmp_path: Path) -> None:
    with client(server) as c:
        r = c.put("/items", json={"items": [{"item_id": "n1", "title": "Blue guitar strap", "categories": ["music"],
                                             "attributes": {"color": "blue", "price": 12.5}}]})
        assert r.status_code == 200, r.text
        out = r.json()["items"][0]
        assert out["status"] == "created"
        assert len(out["sid"]) == 3
        assert journal_lines(tmp_path) == 1  # durable before the 200
        # recommendable on the very next request: restricted to it, it comes back
        assert rec_ids(c, history=["i0", "i1"], k=5, allow=["n1"]) == ["n1"]
        assert "n1" in rec_ids(c, history=["i0"], k=100)
        view = c.get("/items/n1").json()
        assert view["origin"] == "added"
        assert view["attributes"] == {"color": "blue", "price": 12.5}
        assert view["sid"] == out["sid"]
        assert c.get("/items/i3").json()["origin"] == "trained"

        r = c.delete("/items/n1")
        assert r.status_code == 200
        assert r.json()["status"] == "retired"
        assert c.get("/items/n1").status_code == 404
        assert "n1" not in rec_ids(c, history=["i0"], k=100)
        assert rec_ids(c, history=["i0"], k=5, allow=["n1"]) == []
        assert "n1" not in rec_ids(c, k=100)  # popularity fallback
        assert "n1" not in rec_ids(c, k=100, filter={"categories_any": ["music"]})
        assert c.delete("/items/n1").status_code == 404
        # retiring a trained item: gone from every path too
        assert c.delete("/items/i4").status_code == 200
        assert "i4" not in rec_ids(c, k=100) + rec_ids(c, history=["i0"], k=100)
        metrics = c.get("/metrics").text
        assert 'simgr_catalog_items{origin="trained"} 47.0' in metrics
        assert 'simgr_catalog_changes_total{op="retire"} 2.0' in metrics


def test_idempotent_repeat_and_collision(server: UvicornThread, tmp_path: Path) -> None:
    with client(server) as c:
        body = {"items": [{"item_id": "n2", "title": "Glass beaker", "text": "250 ml"},
                          {"item_id": "i5", "title": "Renamed", "attributes": {"stock": 3}}]}
        first = c.put("/items", json=body).json()["items"]
        assert [o["status"] for o in first] == ["created", "updated"]
        assert first[1]["sid"] == c.get("/items/i5").json()["sid"]  # a trained item keeps its ID
        lines = journal_lines(tmp_path)
        again = c.put("/items", json=body).json()["items"]
        assert [o["status"] for o in again] == ["unchanged", "unchanged"]
        assert [o["sid"] for o in again] == [o["sid"] for o in first]
        assert journal_lines(tmp_path) == lines  # nothing logged for a no-op

        taken = c.get("/items/i0").json()["sid"]
        r = c.put("/items", json={"items": [{"item_id": "n3", "sid": taken}]}).json()["items"][0]
        assert r["sid"][:2] == taken[:2]
        assert r["sid"][2] != taken[2]
        used = {tuple(c.get(f"/items/i{i}").json()["sid"]) for i in range(48)} | {tuple(first[0]["sid"])}
        last_codes = {int(s[2][3:-1]) for s in used if list(s[:2]) == taken[:2]}
        assert int(r["sid"][2][3:-1]) == min(set(range(16)) - last_codes)  # the lowest free code
        # re-coding an added item when its text changes
        moved = c.put("/items", json={"items": [{"item_id": "n2", "title": "Microscope slide box"}]}).json()["items"][0]
        assert moved["status"] == "updated"


def test_filters_exactly_k(server: UvicornThread) -> None:
    with client(server) as c:
        c.put("/items", json={"items": [{"item_id": f"p{i}", "title": f"Drum stick pair {i}",
                                         "categories": ["music"], "attributes": {"price": i}} for i in range(6)]})
        got = rec_ids(c, history=["i1"], k=4, filter={"attributes": {"price": {"min": 1, "max": 5}}})
        assert len(got) == 4
        assert set(got) <= {f"p{i}" for i in range(1, 6)}
        got = rec_ids(c, history=["i1"], k=10, filter={"categories_any": ["lab"]}, exclude=["i3"])
        assert len(got) == 10
        assert all(int(i[1:]) % 2 == 1 and i != "i3" for i in got)  # odd items are "lab"
        assert rec_ids(c, history=["i1"], k=3, filter={"attributes": {"price": [2, 4]}}) in (["p2", "p4"], ["p4", "p2"])
        cold = rec_ids(c, k=5, filter={"categories_any": ["music"], "attributes": {"price": {"max": 2}}})
        assert sorted(cold) == ["p0", "p1", "p2"]  # popularity fallback honours the filter
        assert len(rec_ids(c, k=7, filter={"categories_any": ["lab"]})) == 7


def test_restart_replays_the_journal(quant_bundle_dir: Path, tmp_path: Path) -> None:
    settings = make_settings(artifacts=quant_bundle_dir, state_dir=tmp_path / "state", admin_keys=(ADMIN,))
    with UvicornThread(create_app(settings)) as srv, httpx.Client(base_url=srv.base_url, headers=H, timeout=60) as c:
        sid = c.put("/items", json={"items": [{"item_id": "r1", "title": "Pipette tips"}]}).json()["items"][0]["sid"]
        assert c.delete("/items/i2").status_code == 200
    with UvicornThread(create_app(settings)) as srv, httpx.Client(base_url=srv.base_url, headers=H, timeout=60) as c:
        assert c.get("/items/r1").json()["sid"] == sid
        assert c.get("/items/i2").status_code == 404
        assert rec_ids(c, history=["i0"], k=3, allow=["r1", "i2"]) == ["r1"]


BAD: list[tuple[str, Any]] = [
    ("no title, text or sid", {"items": [{"item_id": "x1", "title": " ", "text": ""}]}),
    ("unknown code", {"items": [{"item_id": "x1", "sid": ["<a_9>", "<b_0>", "<c_0>"]}]}),
    ("wrong length", {"items": [{"item_id": "x1", "sid": ["<a_1>", "<b_0>"]}]}),
    ("bad token", {"items": [{"item_id": "x1", "sid": ["a_1", "<b_0>", "<c_0>"]}]}),
    ("1001 items", {"items": [{"item_id": f"x{i}", "sid": ["<a_1>", "<b_0>", "<c_0>"]} for i in range(1001)]}),
    ("duplicate ids", {"items": [{"item_id": "x1", "title": "A"}, {"item_id": "x1", "title": "B"}]}),
    ("list attribute", {"items": [{"item_id": "x1", "title": "A", "attributes": {"c": [1]}}]}),
    ("object attribute", {"items": [{"item_id": "x1", "title": "A", "attributes": {"c": {"d": 1}}}]}),
    ("categories not a list", {"items": [{"item_id": "x1", "title": "A", "categories": "music"}]}),
    ("category not a string", {"items": [{"item_id": "x1", "title": "A", "categories": [3]}]}),
    ("id over 128", {"items": [{"item_id": "x" * 129, "title": "A"}]}),
    ("extra field", {"items": [{"item_id": "x1", "title": "A", "price": 3}]}),
    ("empty batch", {"items": []}),
]


@pytest.mark.parametrize(("why", "body"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_4xx_and_changes_nothing(server: UvicornThread, tmp_path: Path, why: str, body: Any) -> None:
    with client(server) as c:
        r = c.put("/items", json=body)
        assert r.status_code == 422, (why, r.text)
        assert r.json()["error_type"] == "validation"
        assert journal_lines(tmp_path) == 0
        assert c.get("/items/x1").status_code == 404


def test_oversized_body_and_keys(server: UvicornThread, tmp_path: Path) -> None:
    big = {"items": [{"item_id": f"x{i}", "title": "A", "text": "t" * 2000} for i in range(600)]}
    with client(server) as c:
        assert c.put("/items", json=big).status_code == 413
    with httpx.Client(base_url=server.base_url, timeout=60) as c:
        body = {"items": [{"item_id": "x1", "title": "A"}]}
        assert c.put("/items", json=body).status_code == 401
        assert c.put("/items", json=body, headers={"Authorization": "Bearer wrong-key-0000"}).status_code == 401
        assert c.put("/items", json=body, headers={"Authorization": f"Bearer {DATA}"}).status_code == 403
        assert c.delete("/items/i1", headers={"Authorization": f"Bearer {DATA}"}).status_code == 403
        assert c.get("/items/i1", headers={"Authorization": f"Bearer {DATA}"}).status_code == 200
    assert journal_lines(tmp_path) == 0


def test_given_ids_need_a_sid(bundle_dir: Path, tmp_path: Path) -> None:
    settings = make_settings(artifacts=bundle_dir, state_dir=tmp_path / "state", admin_keys=(ADMIN,))
    with UvicornThread(create_app(settings)) as srv, httpx.Client(base_url=srv.base_url, headers=H, timeout=60) as c:
        r = c.put("/items", json={"items": [{"item_id": "g1", "title": "Text only"}]})
        assert r.status_code == 422
        assert "must come with its `sid`" in r.json()["error"]
        sid = c.get("/items/item-0").json()["sid"]
        r = c.put("/items", json={"items": [{"item_id": "g1", "title": "T", "sid": sid}]})
        assert r.status_code == 200, r.text
        assert r.json()["items"][0]["sid"][:3] == sid[:3]


def test_no_durable_log_refuses_changes(quant_bundle_dir: Path) -> None:
    with UvicornThread(create_app(make_settings(artifacts=quant_bundle_dir, admin_keys=(ADMIN,)))) as srv, \
            httpx.Client(base_url=srv.base_url, headers=H, timeout=60) as c:
        r = c.put("/items", json={"items": [{"item_id": "z1", "title": "A"}]})
        assert r.status_code == 503
        assert "SIMGR_STATE_DIR" in r.json()["error"]
        assert c.get("/items/z1").status_code == 404


def test_compacted_bundle_skips_folded_entries(quant_bundle_dir: Path, tmp_path: Path) -> None:
    from service.cli.main import main

    state = tmp_path / "state"
    settings = make_settings(artifacts=quant_bundle_dir, state_dir=state, admin_keys=(ADMIN,))
    with UvicornThread(create_app(settings)) as srv, httpx.Client(base_url=srv.base_url, headers=H, timeout=60) as c:
        c.put("/items", json={"items": [{"item_id": "f1", "title": "Scale weights", "attributes": {"g": 5}}]})
        assert c.delete("/items/i7").status_code == 200
    out = tmp_path / "compacted"
    assert main(["catalog", "compact", "--artifacts", str(quant_bundle_dir), "--out", str(out),
                 "--state-dir", str(state)]) == 0
    settings = make_settings(artifacts=out, state_dir=state, admin_keys=(ADMIN,))
    with UvicornThread(create_app(settings)) as srv, httpx.Client(base_url=srv.base_url, headers=H, timeout=60) as c:
        assert c.get("/items/f1").json()["attributes"] == {"g": 5}  # from the bundle, not re-applied
        assert c.get("/items/i7").status_code == 404
        metrics = c.get("/metrics").text
        assert 'simgr_catalog_changes_total{op="upsert"}' not in metrics  # folded entries are skipped
        assert 'simgr_catalog_items{origin="added"} 1.0' in metrics
        r = c.put("/items", json={"items": [{"item_id": "f1", "title": "Scale weights", "attributes": {"g": 6}}]})
        assert r.json()["items"][0]["status"] == "updated"
    with UvicornThread(create_app(settings)) as srv, httpx.Client(base_url=srv.base_url, headers=H, timeout=60) as c:
        assert c.get("/items/f1").json()["attributes"] == {"g": 6}  # only the entry after the fold replays
        assert c.get("/items/i7").status_code == 404
        metrics = c.get("/metrics").text
        assert 'simgr_catalog_items{origin="added"} 1.0' in metrics
        assert 'simgr_catalog_changes_total{op="upsert"} 1.0' in metrics
        assert 'simgr_catalog_changes_total{op="retire"}' not in metrics


def test_neighbour_embedding_over_http_survives_a_restart(quant_bundle_dir: Path, tmp_path: Path) -> None:
    """SIMGR_ADDED_ITEM_NEIGHBOURS=1: an item added into a cell that one trained item holds is scored exactly
    like that item, before and after the journal replay."""
    import numpy as np

    from model.export.bundle import Bundle
    from model.semantic_ids.space import sid_tokens

    b = Bundle.load(quant_bundle_dir)
    rows = [b.catalog.row(i) for i in range(len(b.catalog))]
    cells: dict[tuple[int, ...], list[str]] = {}
    for r in rows:
        cells.setdefault(r.sid[:-1], []).append(r.item_id)
    prefix, (owner,) = next((p, ids) for p, ids in cells.items() if len(ids) == 1)
    used = {r.sid[-1] for r in rows if r.sid[:-1] == prefix}
    sid = sid_tokens((*prefix, min(set(range(b.space.sizes[-1])) - used)))
    settings = make_settings(artifacts=quant_bundle_dir, state_dir=tmp_path / "state", admin_keys=(ADMIN,),
                             added_item_neighbours=1)

    def scores(c: httpx.Client) -> dict[str, float]:
        r = c.post("/recommend", json={"history": ["i0", "i1"], "k": 2, "allow": ["n1", owner]})
        assert r.status_code == 200, r.text
        return {it["item_id"]: it["score"] for it in r.json()["items"]}

    with UvicornThread(create_app(settings)) as srv, client(srv) as c:
        assert c.put("/items", json={"items": [{"item_id": "n1", "title": "New", "sid": sid}]}).status_code == 200
        before = scores(c)
    with UvicornThread(create_app(settings)) as srv, client(srv) as c:  # replays the journal
        after = scores(c)
    assert set(before) == {"n1", owner}
    np.testing.assert_allclose(before["n1"], before[owner], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose([after["n1"], after[owner]], [before["n1"], before[owner]], rtol=1e-5, atol=1e-6)
