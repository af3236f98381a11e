"""index/columns.py and index/rows.py: the columnar store round-trips every row; lookups survive hash
collisions and repeated ids."""

from __future__ import annotations

import numpy as np
import pytest

from index.catalog import Catalog
from index.columns import HashIndex, StringColumn
from index.rows import BaseRows, CatalogRow


def test_string_column_known_answer() -> None:
    col = StringColumn.build(["a", "bc", "", "é"])
    assert col.data == "abcé".encode()
    assert col.offsets.tolist() == [0, 1, 3, 3, 5]
    assert list(col) == ["a", "bc", "", "é"]


def test_hash_index_returns_every_value_of_a_colliding_hash_in_insertion_order() -> None:
    index = HashIndex(np.array([5, 3, 5, 9]), np.array([10, 11, 12, 13]))
    assert index.candidates(5).tolist() == [10, 12]
    assert index.candidates(9).tolist() == [13]
    assert index.candidates(4).tolist() == []
    assert index.candidates(100).tolist() == []


ROWS = [
    CatalogRow("a", (0, 1, 0), "trained", title="Ä title", text="t", categories=("x", "y"),
               attributes=(("flag", True), ("n", 1), ("price", 2.5), ("s", "v")), live=False),
    CatalogRow("b", (0, 1, 1), "added"),
    CatalogRow("a", (3, 3, 0), "added", title="A again"),  # a re-coded item: its old row is dead
    CatalogRow("c", (0, 1, 2), "trained", categories=("y",)),
]


def test_rows_round_trip_through_the_columns() -> None:
    base = BaseRows.build(ROWS)
    assert [base.row(i) for i in range(len(ROWS))] == ROWS
    assert base.row(0).attributes[0] == ("flag", True)  # a bool stays a bool, not 1
    assert base.categories["y"].tolist() == [0, 3]


def test_lookups_latest_row_live_rows_and_taken_codes() -> None:
    base = BaseRows.build(ROWS)
    assert base.last_row("a") == 2
    assert base.last_row("zzz") is None
    assert base.used_codes((0, 1)) == {0, 1, 2}
    assert base.used_codes((3, 3)) == {0}
    cat = Catalog(ROWS, np.zeros((4, 2), dtype=np.float32), [0, 3])
    assert cat.lookup["a"] == 2
    assert cat.lookup["c"] == 3
    assert "zzz" not in cat.lookup
    assert len(cat.lookup) == 3
    assert sorted(cat.lookup) == ["a", "b", "c"]
    assert list(cat.ids) == ["a", "b", "a", "c"]
    assert cat.popularity.tolist() == [3, 1, 2]  # row 0 was popular but is dead; added rows last
    assert cat.counts() == {"trained": 1, "added": 2}


def test_a_live_row_shadowed_by_a_later_row_of_its_id_is_refused() -> None:
    rows = [CatalogRow("a", (0, 0), "trained"), CatalogRow("a", (1, 0), "added")]
    with pytest.raises(ValueError, match="'a'"):
        BaseRows.build(rows)
