"""amazon2018 source: LC-Rec filtering on a hand-built ratings CSV + meta file with a worked 5-core answer."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from model.data.dataset import Dataset
from model.data.prepare import prepare_dataset
from model.data.sources.amazon2018 import Rating, k_core
from model.errors import SimGRError

CORE = ["U1", "U2", "U3", "U4", "U5"]
RATINGS = [  # (item, user, rating, timestamp), in file order
    ("B002", "U3", 5, 200),  # line 1: U3 appears first; ties with U3-B001 (line 4) and stays before it
    ("B001", "U2", 5, 500),
    ("B001", "U1", 5, 100),
    ("B001", "U3", 4, 200),
    ("B001", "U4", 4, 30),
    ("B001", "U5", 4, 1002),
    ("B001", "U1", 1, 900),  # repeated pair, later: dropped (U1 keeps B001 at t=100)
    ("B002", "U1", 5, 200), ("B002", "U2", 5, 400), ("B002", "U4", 5, 10), ("B002", "U5", 5, 1003),
    ("B003", "U1", 5, 300), ("B003", "U2", 5, 300), ("B003", "U3", 5, 100), ("B003", "U4", 5, 40),
    ("B003", "U5", 5, 1004),
    ("B004", "U1", 5, 400), ("B004", "U2", 5, 200), ("B004", "U3", 5, 400), ("B004", "U4", 5, 20),
    ("B004", "U5", 5, 1000),
    ("B005", "U1", 5, 500), ("B005", "U2", 5, 100), ("B005", "U3", 5, 300), ("B005", "U4", 5, 50),
    ("B005", "U5", 5, 1001),
    # B007 has no metadata and B008's title cleans to "": both go before the k-core (else they'd pass it)
    *[("B007", u, 3, 150) for u in CORE],
    *[("B008", u, 3, 250) for u in CORE],
    # B006 has 4 raters -> out in round 1, together with U7-U9 (2 ratings each); then U6 has 4 -> round 2
    ("B001", "U6", 2, 10), ("B002", "U6", 2, 11), ("B003", "U6", 2, 12), ("B004", "U6", 2, 13),
    ("B006", "U6", 2, 14),
    ("B006", "U7", 1, 5), ("B001", "U7", 1, 6), ("B006", "U8", 1, 5), ("B001", "U8", 1, 6),
    ("B006", "U9", 1, 5), ("B001", "U9", 1, 6),
    # U10: 5 rows but 4 distinct items -> out in round 1 (would survive without de-duplication)
    ("B001", "U10", 3, 20), ("B002", "U10", 3, 21), ("B003", "U10", 3, 22), ("B004", "U10", 3, 23),
    ("B001", "U10", 3, 24),
]
META_LINES = [
    json.dumps({"asin": "B001", "title": "Guitar &amp; <b>Strap</b>", "brand": "Acme",
                "category": ["Musical Instruments", "Straps"], "description": ["Soft", "<br/>leather"]}),
    repr({"asin": "B002", "title": "Tuner", "description": "y" * 2500}),  # Python literal; long text blanked
    json.dumps({"asin": "B003", "title": "Capo", "category": []}),
    json.dumps({"asin": "B003", "title": "Second record for B003 is ignored"}),
    "",
    json.dumps({"asin": "B004", "title": "Strings", "brand": "Ernie"}),
    json.dumps({"asin": "B005", "title": "Picks"}),
    json.dumps({"asin": "B006", "title": "Drum"}),
    json.dumps({"asin": "B008", "title": "<span></span>"}),
    json.dumps({"asin": "B999", "title": "Never rated"}),
]
# users by first line in the CSV; items by first appearance scanning users in that order, oldest first
EXPECTED_USERS = ["U3", "U2", "U1", "U4", "U5"]
EXPECTED_SEQS = {
    "U3": ["B003", "B002", "B001", "B005", "B004"],
    "U2": ["B005", "B004", "B003", "B002", "B001"],
    "U1": ["B001", "B002", "B003", "B004", "B005"],
    "U4": ["B002", "B004", "B001", "B003", "B005"],
    "U5": ["B004", "B005", "B001", "B002", "B003"],
}
EXPECTED_ITEMS = ["B003", "B002", "B001", "B005", "B004"]


def write_amazon(folder: Path, *, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / "Toy_Shop.csv"
    csv_path.write_text("".join(f"{i},{u},{r},{t}\n" for i, u, r, t in RATINGS))
    meta = "\n".join(META_LINES) + "\n"
    if gz:
        with gzip.open(folder / "meta_Toy_Shop.json.gz", "wt", encoding="utf-8") as handle:
            handle.write(meta)
    else:
        (folder / "meta_Toy_Shop.json").write_text(meta)
    return csv_path


@pytest.mark.parametrize("layout", ["folder+json", "csv+gz"])
def test_amazon2018_five_core(tmp_path: Path, layout: str) -> None:
    csv_path = write_amazon(tmp_path / "raw", gz=layout == "csv+gz")
    input_path = csv_path if layout == "csv+gz" else csv_path.parent
    info = prepare_dataset(source="amazon2018", input_path=input_path, out_dir=tmp_path / "data")
    assert (info["name"], info["n_users"], info["n_items"], info["n_interactions"], info["n_train_samples"]) == (
        "Toy_Shop", 5, 5, 25, 10)
    ds = Dataset.load(tmp_path / "data")
    assert ds.user_ids == EXPECTED_USERS
    assert ds.item_ids == EXPECTED_ITEMS
    got = {u: [ds.item_ids[i] for i in seq] for u, seq in zip(ds.user_ids, ds.sequences, strict=True)}
    assert got == EXPECTED_SEQS
    by_id = {item.item_id: item for item in ds.items}
    assert by_id["B001"].title == "Guitar & Strap"
    assert by_id["B001"].text == "Guitar & Strap. Brand: Acme. Categories: Musical Instruments, Straps. Soft leather."
    assert by_id["B001"].categories == ("Musical Instruments", "Straps")
    assert by_id["B002"].text == "Tuner."
    assert by_id["B003"].title == "Capo"
    assert info["has_text"]
    assert info["has_categories"]
    assert not info["has_given_sids"]


def test_k_core_docstring_example() -> None:
    rows = [Rating(0, n, u, i) for n, (u, i) in enumerate([("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"),
                                                           ("u3", "a"), ("u3", "c")])]
    kept = k_core(rows, min_user=2, min_item=2)
    assert [(r.user, r.item) for r in kept] == [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")]


def test_amazon2018_bad_input(tmp_path: Path) -> None:
    csv_path = write_amazon(tmp_path / "raw")
    meta = csv_path.parent / "meta_Toy_Shop.json"
    meta.write_text(META_LINES[0] + "\n{'asin': 'B002', oops\n")
    with pytest.raises(SimGRError, match=r"meta_Toy_Shop.json: line 2 is neither JSON nor a Python literal"):
        prepare_dataset(source="amazon2018", input_path=csv_path, out_dir=tmp_path / "data")
    meta.unlink()
    with pytest.raises(SimGRError, match=r"raw: no meta file \(meta_\*.json.gz\) found"):
        prepare_dataset(source="amazon2018", input_path=csv_path.parent, out_dir=tmp_path / "data")
    meta.write_text("\n".join(META_LINES) + "\n")
    csv_path.write_text("B001,U1,5,100\nB002,U1,5,yesterday\n")
    with pytest.raises(SimGRError, match=r"Toy_Shop.csv: line 2: timestamp 'yesterday' is not a number"):
        prepare_dataset(source="amazon2018", input_path=csv_path, out_dir=tmp_path / "data")
    csv_path.write_text("B001,U1,5,100\n")  # nothing survives the 5-core
    with pytest.raises(SimGRError, match=r"Toy_Shop.csv: no user has >= 3 interactions"):
        prepare_dataset(source="amazon2018", input_path=csv_path, out_dir=tmp_path / "data")
    with pytest.raises(SimGRError, match=r"expected a folder or a ratings .csv"):
        prepare_dataset(source="amazon2018", input_path=meta, out_dir=tmp_path / "data")
