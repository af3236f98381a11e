"""Every index type: round trip, exact-k filters, catalogue changes, sid-exact == flat (ties included),
recall tuning against exact search, and refused manifest/file mismatches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index import IndexFormatError, ItemIndex, RecallTargetError, SidCodes, exact_topk
from index.spec import IndexChoice, IndexSpec, factory_string
from index.tuning import recall_at_k, tune

KINDS = ["flat", "sid-exact", "hnsw", "ivf", "ivfpq"]


def _catalogue(n: int = 600, d: int = 16, levels: int = 3, k: int = 8, seed: int = 0,
               normalize: bool = True) -> tuple[np.ndarray, SidCodes]:
    """Items built the SimGR way: normalised means of ``levels`` code embeddings; two codes of the last
    level share one embedding, so items that differ only there tie exactly."""
    rng = np.random.default_rng(seed)
    tables = [rng.standard_normal((k, d)).astype(np.float32) * (1.0 - 0.2 * lvl) for lvl in range(levels)]
    tables[-1][1] = tables[-1][0]
    codes = rng.integers(0, k, size=(n, levels)).astype(np.int32)
    mean = sum(tables[lvl][codes[:, lvl]] for lvl in range(levels)) / levels
    emb = mean / np.linalg.norm(mean, axis=1, keepdims=True) if normalize else mean
    return emb.astype(np.float32), SidCodes(tables=tables, codes=codes, normalize=normalize)


def _queries(emb: np.ndarray, b: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = emb[rng.integers(0, len(emb), size=(b, 4))].mean(1) + 0.1 * rng.standard_normal((b, emb.shape[1]))
    return q.astype(np.float32)


def _build(kind: str, emb: np.ndarray, codes: SidCodes) -> ItemIndex:
    index = ItemIndex.build(emb, kind=kind, codes=codes if kind == "sid-exact" else None)
    if kind == "hnsw":
        return index.with_search(ef_search=256)
    if kind in ("ivf", "ivfpq"):
        return index.with_search(nprobe=1024)  # every list: the only loss left is PQ's, re-ranked away
    return index


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_matches_exact(kind: str, tmp_path: Path) -> None:
    emb, codes = _catalogue()
    q = _queries(emb, 8)
    index = _build(kind, emb, codes)
    spec = index.save(tmp_path / kind)
    loaded = ItemIndex.load(tmp_path / kind, expect=spec)
    assert loaded.spec == spec
    assert loaded.spec.kind == kind
    s1, i1 = index.search(q, 10)
    s2, i2 = loaded.search(q, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)
    ref_s, ref_i = exact_topk(q, emb, 10)
    assert recall_at_k(i1, ref_i) >= 0.95
    if kind in ("flat", "sid-exact"):
        np.testing.assert_array_equal(i1, ref_i)
        np.testing.assert_array_equal(s1, ref_s)


@pytest.mark.parametrize("normalize", [True, False])
def test_sid_exact_is_flat_with_ties_filters_and_additions(normalize: bool) -> None:
    emb, codes = _catalogue(n=900, normalize=normalize, seed=3)
    q = _queries(emb, 20, seed=4)
    flat, sid = ItemIndex.build(emb), ItemIndex.build(emb, kind="sid-exact", codes=codes)
    for k in (1, 10, 50):
        s_f, i_f = flat.search(q, k)
        s_s, i_s = sid.search(q, k)
        np.testing.assert_array_equal(i_s, i_f)
        np.testing.assert_array_equal(s_s, s_f)
    ties = [(r, c) for r in range(20) for c in range(49) if s_f[r, c] == s_f[r, c + 1]]
    assert ties, "the catalogue has exact ties in the top 50"
    assert all(i_f[r, c] < i_f[r, c + 1] for r, c in ties)  # ties go to the smaller id
    rng = np.random.default_rng(5)
    excl = [set(rng.choice(900, 60, replace=False).tolist()) | set(i_f[r, :5].tolist()) for r in range(20)]
    allow = [None if r % 3 else set(rng.choice(900, 40, replace=False).tolist()) for r in range(20)]
    for idx in (flat, sid):
        idx.add(emb[:7] * 1.01, np.arange(900, 907), codes=codes.codes[:7])
        idx.remove([int(i_f[0, 0]), 3, 905])
    a = flat.search(q, 10, exclude=excl, allow=allow)
    b = sid.search(q, 10, exclude=excl, allow=allow)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[0], b[0])
    assert set(range(900, 907)) - {905} & set(a[1].ravel().tolist()), "added items can be recommended"
    assert not {int(i_f[0, 0]), 3, 905} & set(a[1].ravel().tolist())


@pytest.mark.parametrize("kind", KINDS)
def test_filters_are_exact_k_on_every_type(kind: str) -> None:
    emb, codes = _catalogue(n=400, seed=7)
    q = _queries(emb, 6, seed=8)
    index = _build(kind, emb, codes)
    rng = np.random.default_rng(9)
    retired = rng.choice(400, 50, replace=False)
    index.remove(retired.tolist())
    excl = [set(rng.choice(400, n, replace=False).tolist()) for n in (0, 5, 100, 300, 345, 399)]
    _, ids = index.search(q, 20, exclude=excl)
    for row, ex in zip(ids, excl, strict=True):
        remaining = 400 - len(ex | set(retired.tolist()))
        got = row[row >= 0]
        assert len(got) == min(20, remaining), (kind, len(ex))
        assert len(set(got.tolist())) == len(got)
        assert not set(got.tolist()) & (ex | set(retired.tolist()))
    allow = [set(range(30)), set(range(5)), None, set(), {int(retired[0])}, set(range(400))]
    _, ids = index.search(q, 10, exclude=excl, allow=allow)
    for row, ex, al in zip(ids, excl, allow, strict=True):
        if al is None:
            continue
        ok = al - ex - set(retired.tolist())
        assert set(row[row >= 0].tolist()) <= ok
        assert (row >= 0).sum() == min(10, len(ok))


@pytest.mark.parametrize("kind", KINDS)
def test_catalogue_changes_on_every_type(kind: str, tmp_path: Path) -> None:
    emb, codes = _catalogue(n=300, seed=11)
    index = _build(kind, emb, codes)
    new = emb[:3][::-1] * 2.0  # scaled copies: the best match for their own direction
    index.add(new, np.array([300, 301, 302]), codes=codes.codes[:3][::-1].copy())
    _, ids = index.search(new, 1)
    assert ids[:, 0].tolist() == [300, 301, 302]
    assert index.remove([301, 299, 12345]) == 2
    _, ids = index.search(new, 5)
    assert 301 not in ids
    assert 299 not in ids
    spec = index.save(tmp_path / "ix")  # additions folded in, retirements kept
    loaded = ItemIndex.load(tmp_path / "ix", expect=spec)
    assert loaded.ntotal == 303
    np.testing.assert_array_equal(loaded.search(new, 5)[1], ids)


def test_tuning_reaches_the_target_and_fails_cleanly() -> None:
    emb, codes = _catalogue(n=3000, d=24, levels=3, k=16, seed=13)
    q = _queries(emb, 60, seed=14)
    hnsw = ItemIndex.build(emb, kind="hnsw")
    tuned = tune(hnsw, q, min_recall=0.98, max_search=4096)
    assert tuned.spec.recall_at_10 is not None
    assert tuned.spec.recall_at_10 >= 0.98
    assert tuned.spec.recall_queries == 60
    assert tuned.spec.ef_search is not None
    assert recall_at_k(tuned.search(q, 10)[1], exact_topk(q, emb, 10)[1]) == tuned.spec.recall_at_10
    ivf = ItemIndex.build(emb, kind="ivf", factory=factory_string("ivf", IndexChoice(nlist=64), n_items=3000, dim=24))
    with pytest.raises(RecallTargetError, match=r"best was 0\.\d+ \(nprobe=1\)"):
        tune(ivf, q, min_recall=1.0, max_search=1)
    exact = tune(ItemIndex.build(emb, kind="sid-exact", codes=codes), q, min_recall=1.0, max_search=1)
    assert exact.spec.recall_at_10 == 1.0


def test_manifest_and_file_mismatch_is_refused(tmp_path: Path) -> None:
    emb, codes = _catalogue(n=200)
    hnsw = ItemIndex.build(emb, kind="hnsw").save(tmp_path / "h")
    with pytest.raises(IndexFormatError, match="manifest expects a ivf index"):
        ItemIndex.load(tmp_path / "h", expect=hnsw.model_copy(update={"kind": "ivf"}))
    sid = ItemIndex.build(emb, kind="sid-exact", codes=codes).save(tmp_path / "s")
    with pytest.raises(IndexFormatError, match="200 items"):
        ItemIndex.load(tmp_path / "s", expect=IndexSpec(kind="sid-exact", file=sid.file, n_items=201, dim=16))
    (tmp_path / "h" / "index.json").write_text(sid.model_dump_json())  # the record lies about the file
    with pytest.raises(IndexFormatError, match=r"sid_codes\.npz"):
        ItemIndex.load(tmp_path / "h")
    ItemIndex.build(emb[:, :8], kind="flat").save(tmp_path / "f")
    np.save(tmp_path / "f" / "item_embeddings.npy", emb)  # the matrix no longer matches the record
    with pytest.raises(IndexFormatError, match="shape"):
        ItemIndex.load(tmp_path / "f")
