"""`simgr catalog apply` writes a new complete bundle (never editing the source); `simgr catalog compact`
folds the change log into a bundle that replicas load without re-applying folded entries."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from model.export.bundle import Bundle
from service.cli.main import main


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def write_changes(path: Path, lines: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def test_apply_writes_a_new_bundle(quant_bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = tree_digest(quant_bundle_dir)
    changes = write_changes(tmp_path / "changes.jsonl", [
        {"op": "upsert", "item": {"item_id": "c1", "title": "Tuner clip", "categories": ["music"],
                                  "attributes": {"price": 9}}},
        {"op": "upsert", "item": {"item_id": "i1", "title": "Renamed"}},
        {"op": "retire", "item_id": "i2"},
    ])
    out = tmp_path / "b2"
    assert main(["catalog", "apply", "--artifacts", str(quant_bundle_dir), "--changes", str(changes),
                 "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_items"] == 48  # +1 added, -1 retired
    assert result["changes"] == {"created": 1, "updated": 1, "retired": 1}
    assert tree_digest(quant_bundle_dir) == before  # the source bundle is untouched
    b2 = Bundle.load(out)
    assert "i2" not in b2.item_lookup
    assert b2.catalog.rows[b2.item_lookup["c1"]].origin == "added"
    assert b2.catalog.rows[b2.item_lookup["i1"]].title == "Renamed"
    assert b2.manifest.catalog_root == Bundle.load(quant_bundle_dir).manifest.model_version
    by_cat = json.loads((out / "popularity_by_category.json").read_text())
    assert "c1" in by_cat["music"]
    src = Bundle.load(quant_bundle_dir)
    np.testing.assert_allclose(b2.embeddings[b2.item_lookup["i1"]], src.embeddings[src.item_lookup["i1"]])


def test_apply_bad_changes_is_a_one_line_error(quant_bundle_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    changes = write_changes(tmp_path / "c.jsonl", [{"op": "upsert", "item": {"item_id": "c1"}}])
    assert main(["catalog", "apply", "--artifacts", str(quant_bundle_dir), "--changes", str(changes),
                 "--out", str(tmp_path / "b2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("simgr: error: ")
    assert "c.jsonl: line 1" in err
    assert not (tmp_path / "b2").exists()
    changes = write_changes(tmp_path / "c.jsonl", [{"op": "upsert", "item": {"item_id": "c1", "sid": ["<a_99>", "<b_0>", "<c_0>"]}}])
    assert main(["catalog", "apply", "--artifacts", str(quant_bundle_dir), "--changes", str(changes),
                 "--out", str(tmp_path / "b2")]) == 2
    assert "outside" in capsys.readouterr().err
    assert main(["catalog", "apply", "--artifacts", str(quant_bundle_dir), "--changes", str(changes),
                 "--out", str(quant_bundle_dir / "x")]) == 2


def test_added_item_gain_scales_only_the_added_vectors(quant_bundle_dir: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    changes = write_changes(tmp_path / "c.jsonl", [{"op": "upsert", "item": {"item_id": "c1", "title": "Tuner clip"}}])
    vectors = {}
    for gain in ("1", "2.5"):
        out = tmp_path / f"b{gain}"
        assert main(["catalog", "apply", "--artifacts", str(quant_bundle_dir), "--changes", str(changes),
                     "--out", str(out), "--added-item-gain", gain]) == 0
        b = Bundle.load(out)
        vectors[gain] = (np.asarray(b.embeddings[b.item_lookup["c1"]]), np.asarray(b.embeddings[b.item_lookup["i1"]]))
    np.testing.assert_allclose(vectors["2.5"][0], 2.5 * vectors["1"][0], rtol=1e-5)  # the added item, scaled
    np.testing.assert_allclose(np.linalg.norm(vectors["1"][0]), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors["2.5"][1], vectors["1"][1])  # a trained item, as it was
    capsys.readouterr()
    assert main(["catalog", "apply", "--artifacts", str(quant_bundle_dir), "--changes", str(changes),
                 "--out", str(tmp_path / "b0"), "--added-item-gain", "0"]) == 2
    assert "gain must be positive" in capsys.readouterr().err
    assert not (tmp_path / "b0").exists()


def test_compact_folds_the_journal(quant_bundle_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from index.catalog import Retire, Upsert
    from service.catalog import change_to_json
    from service.durable_log import open_log

    root = Bundle.load(quant_bundle_dir).manifest.root
    log = open_log(name="catalog", redis_url=None, state_dir=tmp_path / "state")
    recs = [{"root": root, "ts": 0.0, "changes": [change_to_json(Upsert("k1", title="Capo", codes=(1, 1)))]},
            {"root": "another-model", "ts": 0.0, "changes": [change_to_json(Retire("i0"))]},
            {"root": root, "ts": 0.0, "changes": [change_to_json(Retire("i3"))]}]
    asyncio.run(log.append(recs))
    out = tmp_path / "b2"
    assert main(["catalog", "compact", "--artifacts", str(quant_bundle_dir), "--out", str(out),
                 "--state-dir", str(tmp_path / "state")]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["entries_folded"] == 2
    assert result["catalog_through"] == "3"
    b2 = Bundle.load(out)
    assert "k1" in b2.item_lookup
    assert "i3" not in b2.item_lookup
    assert "i0" in b2.item_lookup
    assert b2.manifest.catalog_through == "3"
    assert b2.manifest.root == root  # replicas of the compacted bundle follow the same log
