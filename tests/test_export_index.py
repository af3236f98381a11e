"""Export with each index type on a trained tiny run: tuned on validation users, recorded in the manifest,
loaded back through the manifest check; sid-exact == flat on the trained model; impossible targets fail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from index import ItemIndex
from model.errors import SimGRError
from model.export.bundle import Bundle
from model.export.indexing import sid_codes
from service.cli.main import main

TINY = ["--backbone", "tiny", "--batch-size", "32", "--micro-batch-size", "32", "--lr", "0.01"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("export_index")
    data = make_synthetic_dataset(root / "data", n_users=120, n_items=400, min_len=4, max_len=8)
    assert main(["train", "--data", str(data), "--out", str(root / "run"), "--epochs", "1", *TINY]) == 0
    return root / "run"


def _export(run: Path, out: Path, *flags: str) -> int:
    return main(["export", "--run", str(run), "--out", str(out), "--check-users", "16", *flags])


@pytest.mark.parametrize("kind", ["flat", "sid-exact", "hnsw", "ivf", "ivfpq"])
def test_export_each_type_records_measured_recall(kind: str, trained_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bundle"
    assert _export(trained_run, out, "--index", kind, "--min-recall", "0.95") == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = json.loads((out / "manifest.json").read_text())["index"]
    assert printed["index"]["kind"] == manifest["kind"] == kind
    assert manifest["recall_at_10"] >= 0.95
    assert manifest["recall_queries"] == 120  # every validation user
    if kind in ("flat", "sid-exact"):
        assert manifest["recall_at_10"] == 1.0
    if kind == "hnsw":
        assert manifest["ef_search"] >= 10
    if kind in ("ivf", "ivfpq"):
        assert manifest["nprobe"] >= 1
    bundle = Bundle.load(out)
    index = ItemIndex.load(out, expect=bundle.manifest.index, matrix=bundle.embeddings)
    assert index.spec.kind == kind
    assert index.matrix is bundle.embeddings  # one copy of the item matrix
    q = bundle.encode_users([[1, 2, 3], [50, 51]])
    _, ids = index.search(q, 10, exclude=[{1, 2, 3}, {50, 51}])
    assert (ids >= 0).all()
    assert not {1, 2, 3} & set(ids[0].tolist())


def test_sid_exact_equals_flat_on_the_trained_model(trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    assert _export(trained_run, out, "--index", "sid-exact") == 0
    bundle = Bundle.load(out)
    sid = ItemIndex.load(out, expect=bundle.manifest.index, matrix=bundle.embeddings)
    flat = ItemIndex.build(np.array(bundle.embeddings))
    rng = np.random.default_rng(0)
    hist = [rng.choice(400, size=int(rng.integers(1, 8)), replace=False).tolist() for _ in range(40)]
    q = bundle.encode_users(hist)
    excl = [set(h) for h in hist]
    allow = [None if u % 4 else set(rng.choice(400, 30, replace=False).tolist()) for u in range(40)]
    for k in (1, 10, 100):
        a, b = sid.search(q, k, exclude=excl, allow=allow), flat.search(q, k, exclude=excl, allow=allow)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])
    # additions: new code tuples written from existing tokens, embedded the way the model embeds items
    codes = sid_codes(bundle.model)
    new = np.stack([rng.integers(0, len(t), size=6) for t in codes.tables], axis=1).astype(np.int32)
    mean = sum(codes.tables[lvl][new[:, lvl]] for lvl in range(new.shape[1])) / new.shape[1]
    emb = (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)
    for idx in (sid, flat):
        idx.add(emb, np.arange(400, 406), codes=new)
        idx.remove([int(flat.search(q[:1], 1)[1][0, 0]), 401])
    a, b = sid.search(q, 10, exclude=excl), flat.search(q, 10, exclude=excl)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    top = sid.search(emb, 1)[1][:, 0].tolist()
    assert [top[i] for i in (0, 2, 3, 4, 5)] == [400, 402, 403, 404, 405]  # each added item is found
    assert top[1] != 401  # and the retired one never


def test_impossible_recall_target_fails_cleanly(trained_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bundle"
    assert _export(trained_run, out, "--index", "flat") == 0
    before = sorted(p.name for p in out.iterdir())
    manifest = (out / "manifest.json").read_text()
    capsys.readouterr()
    code = _export(trained_run, out, "--index", "ivf", "--nlist", "64", "--min-recall", "1.0", "--max-search", "1",
                   "--force")
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simgr: error: export: no setting of the ivf index reaches recall@10 1.0")
    assert "best was 0." in err
    assert "nprobe=1" in err
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == before  # the old bundle is untouched
    assert (out / "manifest.json").read_text() == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staged directory left behind


def test_manifest_index_mismatch_is_refused(trained_run: Path, tmp_path: Path) -> None:
    from service.model_state import ModelState

    out = tmp_path / "bundle"
    assert _export(trained_run, out, "--index", "sid-exact") == 0
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    m = json.loads((tampered / "manifest.json").read_text())
    m["index"] = {**m["index"], "kind": "hnsw", "file": "index.faiss", "factory": "HNSW32,Flat"}
    (tampered / "manifest.json").write_text(json.dumps(m))
    bundle = Bundle.load(tampered)
    with pytest.raises(SimGRError, match="manifest expects a hnsw index"):
        ModelState.build(bundle, artifacts=tampered)
