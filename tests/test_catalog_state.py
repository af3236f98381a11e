"""index/catalog.py: atomic batches, append-only rows, the uniqueness rule, filters; ItemIndex add/remove."""

from __future__ import annotations

import numpy as np
import pytest

from index.catalog import Catalog, CatalogRow, Retire, Upsert
from index.item_index import ItemIndex, exact_topk


def lowest(_prefix: tuple[int, ...], used: set[int]) -> int | None:
    return next((c for c in range(4) if c not in used), None)


def embed(sids: list[tuple[int, ...]]) -> np.ndarray:
    return np.array([[float(s[0]), float(s[1]), 1.0] for s in sids], dtype=np.float32)


def base() -> Catalog:
    rows = [CatalogRow("a", (0, 0, 0), "trained", title="A", categories=("x",), attributes=(("price", 5),)),
            CatalogRow("b", (0, 0, 1), "trained", title="B", categories=("y",), attributes=(("price", 50),)),
            CatalogRow("c", (1, 1, 0), "trained", title="C", categories=("x", "y"), attributes=(("new", True),))]
    return Catalog(rows, np.eye(3, dtype=np.float32), [2, 0, 1])


def test_new_item_on_a_taken_tuple_gets_the_next_free_code() -> None:
    cat = base()
    nxt, delta, out = cat.apply([Upsert("d", title="D", codes=(0, 0)), Upsert("e", title="E", codes=(0, 0))],
                                unique=lowest, embed=embed)
    assert [o.sid for o in out] == [(0, 0, 2), (0, 0, 3)]
    assert [o.status for o in out] == ["created", "created"]
    assert delta.add_ids.tolist() == [3, 4]
    assert delta.add_vectors.shape == (2, 3)
    assert cat.n_live == 3  # the old catalogue is untouched
    assert nxt.n_live == 5
    assert nxt.popularity.tolist() == [2, 0, 1, 3, 4]
    full, _, out = nxt.apply([Upsert("f", title="F", codes=(0, 0))], unique=lowest, embed=embed)
    assert out[0].status == "uncoded"  # the prefix ran out of codes
    assert "f" not in full.lookup


def test_given_free_id_is_kept_and_repeat_is_unchanged() -> None:
    nxt, _, out = base().apply([Upsert("d", title="D", codes=(2, 2, 3), full=True)], unique=lowest, embed=embed)
    assert out[0].sid == (2, 2, 3)
    _again, delta, out = nxt.apply([Upsert("d", title="D", codes=(2, 2, 3), full=True)], unique=lowest, embed=embed)
    assert out[0].status == "unchanged"
    assert delta.add_ids.size == 0
    assert delta.remove_ids.size == 0


def test_trained_item_keeps_its_id_and_added_item_is_recoded_on_new_text() -> None:
    cat, _, _ = base().apply([Upsert("d", title="D", codes=(1, 1))], unique=lowest, embed=embed)
    nxt, delta, out = cat.apply([Upsert("a", title="A2", codes=(1, 1)), Upsert("d", title="D2", codes=(2, 0))],
                                unique=lowest, embed=embed)
    assert out[0].sid == (0, 0, 0)
    assert out[0].status == "updated"
    assert out[1].sid == (2, 0, 0)
    assert out[1].status == "updated"
    assert delta.remove_ids.tolist() == [3]  # the old row of d leaves the index
    assert delta.add_ids.tolist() == [4]
    assert nxt.lookup["d"] == 4
    assert nxt.rows[3].live is False
    assert nxt.used_codes((1, 1)) == {0, 1}  # c, and the dead row of d: its ID stays taken


def test_retire_then_revive() -> None:
    cat, delta, out = base().apply([Retire("b"), Retire("zzz")], unique=lowest, embed=embed)
    assert [o.status for o in out] == ["retired", "absent"]
    assert delta.remove_ids.tolist() == [1]
    assert "b" not in cat.lookup
    assert 1 not in cat.popularity.tolist()
    _back, delta, out = cat.apply([Upsert("b", title="B")], unique=lowest, embed=embed)
    assert out[0].status == "created"
    assert out[0].sid == (0, 0, 1)
    assert delta.add_ids.tolist() == [1]
    np.testing.assert_array_equal(delta.add_vectors, base().embeddings[[1]])


def test_filters() -> None:
    cat = base()
    assert cat.matching(["x"], None) == {0, 2}
    assert cat.matching(["x", "y"], {"price": {"min": 10}}) == {1}
    assert cat.matching(None, {"price": [5, 50]}) == {0, 1}
    assert cat.matching(None, {"new": True}) == {2}
    assert cat.matching(None, {"new": 1}) == set()  # a boolean is not a number


def test_item_index_add_remove_matches_exact_search() -> None:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((50, 8)).astype(np.float32)
    idx = ItemIndex.build(emb)
    extra = rng.standard_normal((5, 8)).astype(np.float32)
    idx.add(extra, np.arange(50, 55))
    idx.remove([0, 3, 52])
    alive = [i for i in range(55) if i not in (0, 3, 52)]
    table = np.concatenate([emb, extra])
    q = rng.standard_normal((4, 8)).astype(np.float32)
    _, ids = idx.search(q, 10)
    _, ref = exact_topk(q, table[alive], 10)
    assert ids.tolist() == np.asarray(alive)[ref].tolist()
    _, ids = idx.search(q, 10, allow=[{0, 1, 52, 53}] * 4)
    assert all(set(r[r >= 0].tolist()) == {1, 53} for r in ids)
    with pytest.raises(ValueError, match="new"):
        idx.add(extra[:1], np.array([1]))
