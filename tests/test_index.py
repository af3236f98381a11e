"""ItemIndex: FAISS top-k == numpy top-k, filters give exactly k, save/load round trip."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from index import ItemIndex, exact_topk
from index.errors import IndexFormatError


def _data(n: int, d: int, b: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((b, d)).astype(np.float32)


def test_known_answer() -> None:
    emb = np.array([[1, 0], [0, 1], [0.5, 0.5], [-1, 0]], dtype=np.float32)
    index = ItemIndex.build(emb)
    scores, ids = index.search(np.array([[1.0, 0.2]], dtype=np.float32), 3)
    assert ids.tolist() == [[0, 2, 1]]
    np.testing.assert_allclose(scores, [[1.0, 0.6, 0.2]], atol=1e-6)
    assert scores.dtype == np.float32
    assert ids.dtype == np.int64
    assert index.ntotal == 4
    assert index.dim == 2


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 60), d=st.integers(1, 16), b=st.integers(1, 5), k=st.integers(1, 70), seed=st.integers(0, 99))
def test_matches_numpy_reference(n: int, d: int, b: int, k: int, seed: int) -> None:
    emb, q = _data(n, d, b, seed)
    scores, ids = ItemIndex.build(emb).search(q, k)
    ref_s, ref_i = exact_topk(q, emb, k)
    np.testing.assert_allclose(scores, ref_s, rtol=1e-5, atol=1e-5)
    # ids agree wherever scores are not tied
    assert ((ids == ref_i) | np.isclose(scores, ref_s, atol=1e-5)).all()
    assert (ids[:, min(k, n):] == -1).all()
    assert np.isneginf(scores[:, min(k, n):]).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 999), k=st.integers(1, 20), n_excl=st.integers(0, 40))
def test_exclude_gives_exactly_k(seed: int, k: int, n_excl: int) -> None:
    emb, q = _data(40, 8, 3, seed)
    rng = np.random.default_rng(seed)
    excl = [set(rng.choice(40, size=n_excl, replace=False).tolist()) for _ in range(3)]
    scores, ids = ItemIndex.build(emb).search(q, k, exclude=excl)
    for qrow, srow, row, ex in zip(q, scores, ids, excl, strict=True):
        keep = np.array(sorted(set(range(40)) - ex), dtype=np.int64)
        got = row[row >= 0]
        assert len(got) == min(k, len(keep))
        assert not set(got.tolist()) & ex
        # the survivors are the exact top among the remaining items
        ref_s, _ref_pos = exact_topk(qrow[None, :], emb[keep], k)
        np.testing.assert_allclose(srow, ref_s[0], rtol=1e-5, atol=1e-5)


def test_exclude_returns_best_remaining() -> None:
    emb, q = _data(30, 6, 2)
    full_s, full_i = exact_topk(q, emb, 30)
    excl = [set(full_i[0, :5].tolist()), set()]
    scores, ids = ItemIndex.build(emb).search(q, 4, exclude=excl)
    assert ids[0].tolist() == full_i[0, 5:9].tolist()
    assert ids[1].tolist() == full_i[1, :4].tolist()
    np.testing.assert_allclose(scores[0], full_s[0, 5:9], atol=1e-5)


def test_allow_restricts_and_combines_with_exclude() -> None:
    emb, q = _data(50, 8, 3)
    allow = [{1, 2, 3, 4, 5, 6}, None, {7, 999}]  # 999 is unknown and ignored
    excl = [{1, 2}, set(), set()]
    scores, ids = ItemIndex.build(emb).search(q, 5, exclude=excl, allow=allow)
    assert sorted(ids[0][:4].tolist()) == [3, 4, 5, 6]
    assert ids[0][4] == -1
    ref = sorted([3, 4, 5, 6], key=lambda i: -float(emb[i] @ q[0]))
    assert ids[0][:4].tolist() == ref
    assert ids[1].tolist() == exact_topk(q[1:2], emb, 5)[1][0].tolist()
    assert ids[2].tolist() == [7, -1, -1, -1, -1]
    np.testing.assert_allclose(scores[2, 0], emb[7] @ q[2], atol=1e-5)


def test_empty_allow_means_nothing_allowed() -> None:
    emb, q = _data(10, 4, 1)
    _, ids = ItemIndex.build(emb).search(q, 3, allow=[set()])
    assert ids.tolist() == [[-1, -1, -1]]


def test_custom_ids_and_save_load_round_trip(tmp_path) -> None:
    emb, q = _data(20, 5, 4)
    ids = np.arange(100, 120, dtype=np.int64)[::-1].copy()
    index = ItemIndex.build(emb, ids=ids)
    path = tmp_path / "index"
    index.save(path)
    loaded = ItemIndex.load(path)
    assert loaded.ntotal == 20
    assert loaded.dim == 5
    s1, i1 = index.search(q, 7, exclude=[{119}, set(), set(), set()], allow=[None, {100, 101}, None, None])
    s2, i2 = loaded.search(q, 7, exclude=[{119}, set(), set(), set()], allow=[None, {100, 101}, None, None])
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)
    _ref_s, ref_pos = exact_topk(q, emb, 7)
    np.testing.assert_array_equal(i1[2], ids[ref_pos[2]])
    assert 119 not in i1[0]


def test_bad_inputs() -> None:
    emb, q = _data(10, 4, 2)
    index = ItemIndex.build(emb)
    with pytest.raises(ValueError, match="shape"):
        index.search(q[:, :3], 2)
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full((1, 4), np.nan, dtype=np.float32), 2)
    with pytest.raises(ValueError, match="k must be"):
        index.search(q, 0)
    with pytest.raises(ValueError, match="one entry per query"):
        index.search(q, 2, exclude=[set()])
    with pytest.raises(ValueError, match="unique"):
        ItemIndex.build(emb, ids=np.zeros(10, dtype=np.int64))
    with pytest.raises(ValueError, match="NaN"):
        ItemIndex.build(np.full((2, 2), np.inf, dtype=np.float32))


def test_load_errors_are_user_facing(tmp_path) -> None:
    with pytest.raises(IndexFormatError, match="not found"):
        ItemIndex.load(tmp_path / "missing")
    emb, _ = _data(10, 4, 1)
    ItemIndex.build(emb, kind="hnsw").save(tmp_path / "ix")
    (tmp_path / "ix" / "index.faiss").write_bytes(b"not an index")
    with pytest.raises(IndexFormatError, match=r"index.faiss"):
        ItemIndex.load(tmp_path / "ix")
    faiss.write_index(faiss.IndexFlatIP(4), str(tmp_path / "ix" / "index.faiss"))
    with pytest.raises(IndexFormatError, match="IndexFlatIP"):
        ItemIndex.load(tmp_path / "ix")
