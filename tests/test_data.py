"""simgr prepare (lcrec) + the Dataset loader: hand-computed known answers, real LC-Rec files, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.config import DataConfig
from model.data.dataset import Dataset
from model.data.prepare import index_record, prepare_dataset
from model.data.sources.records import SourceRecord
from model.data.sources.registry import FETCHED, SOURCES, get_reader
from model.data.sources.text import clean_text, compose_text, truncate
from model.errors import SimGRError

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"  # ../shared/data from the repo root

INTER = {
    "u1": [10, 11, 12, 13, 14],
    "u2": [12, 15],  # < 3 interactions: dropped, and item 15 is first seen later (in u3)
    "u3": [15, 10, 16],
    "u4": [11, 11, 17, 10],  # repeats are kept as they are
}
ITEMS = {
    "10": {"title": "Guitar &amp; Strap", "brand": "Acme", "categories": "Music,Guitars",
           "description": "<p>Great   strap</p>"},
    "12": {"title": "Picks", "description": "x" * 3000, "categories": ""},  # long text is blanked
    "99": {"title": "Never bought"},
}
SIDS = {str(i): [f"<a_{i}>", f"<b_{i % 3}>"] for i in [10, 11, 12, 13, 14, 15, 16, 17, 99]}


def write_lcrec(folder: Path, *, items: bool = True, sids: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Tiny.inter.json").write_text(json.dumps(INTER))
    if items:
        (folder / "Tiny.item.json").write_text(json.dumps(ITEMS))
    if sids is not None:
        (folder / "Tiny.index.json").write_text(json.dumps(sids))
    return folder


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[dict, Path]:
    out = tmp_path / "data"
    info = prepare_dataset(source="lcrec", input_path=write_lcrec(tmp_path / "raw", sids=SIDS), out_dir=out)
    return info, out


def test_prepare_known_answer(tiny: tuple[dict, Path]) -> None:
    info, out = tiny
    assert info == {
        "format_version": 1, "name": "Tiny", "source": "lcrec", "n_users": 3, "n_items": 8,
        "n_interactions": 12, "n_train_samples": 3, "max_history": 20, "has_text": True,
        "has_categories": True, "has_given_sids": True, "avg_seq_len": 4.0,
    }
    assert json.loads((out / "dataset.json").read_text()) == info
    # items numbered by first appearance over kept users: u1 -> 10..14, u3 -> 15, 16, u4 -> 17
    assert json.loads((out / "item_map.json").read_text()) == {
        "10": 0, "11": 1, "12": 2, "13": 3, "14": 4, "15": 5, "16": 6, "17": 7}
    assert json.loads((out / "user_map.json").read_text()) == {"u1": 0, "u3": 1, "u4": 2}
    assert read_jsonl(out / "sequences.jsonl") == [
        {"user_id": "u1", "items": [0, 1, 2, 3, 4]},
        {"user_id": "u3", "items": [5, 0, 6]},
        {"user_id": "u4", "items": [1, 1, 7, 0]},
    ]
    assert read_jsonl(out / "split" / "train.jsonl") == [
        {"user": 0, "items": [0, 1, 2]}, {"user": 1, "items": [5]}, {"user": 2, "items": [1, 1]}]
    assert read_jsonl(out / "split" / "valid.jsonl") == [
        {"user": 0, "history": [0, 1, 2], "target": 3},
        {"user": 1, "history": [5], "target": 0},
        {"user": 2, "history": [1, 1], "target": 7},
    ]
    assert read_jsonl(out / "split" / "test.jsonl") == [
        {"user": 0, "history": [0, 1, 2, 3], "target": 4},
        {"user": 1, "history": [5, 0], "target": 6},
        {"user": 2, "history": [1, 1, 7], "target": 0},
    ]
    items = read_jsonl(out / "items.jsonl")
    assert items[0] == {"idx": 0, "item_id": "10", "title": "Guitar & Strap",
                        "text": "Guitar & Strap. Brand: Acme. Categories: Music, Guitars. Great strap.",
                        "categories": ["Music", "Guitars"]}
    assert items[1] == {"idx": 1, "item_id": "11", "title": None, "text": None, "categories": []}
    assert items[2] == {"idx": 2, "item_id": "12", "title": "Picks", "text": "Picks.", "categories": []}
    given = json.loads((out / "given_sids.json").read_text())
    assert list(given) == [str(i) for i in range(10, 18)]  # kept items only, idx order
    assert given["17"] == ["<a_17>", "<b_2>"]


def test_dataset_load_round_trip(tiny: tuple[dict, Path]) -> None:
    info, out = tiny
    ds = Dataset.load(out)
    assert (ds.n_users, ds.n_items, ds.info.model_dump()) == (3, 8, info)
    assert ds.user_ids == ["u1", "u3", "u4"]
    assert ds.item_ids == ["10", "11", "12", "13", "14", "15", "16", "17"]
    assert ds.items[0].categories == ("Music", "Guitars")
    assert ds.items[1].text is None
    assert ds.sequences == [[0, 1, 2, 3, 4], [5, 0, 6], [1, 1, 7, 0]]
    assert ds.train_sequences() == [[0, 1, 2], [5], [1, 1]]
    assert ds.eval_examples("valid") == ([[0, 1, 2], [5], [1, 1]], [3, 0, 7])
    assert ds.eval_examples("test", max_history=2) == ([[2, 3], [5, 0], [1, 7]], [4, 6, 0])
    pop = ds.popularity()
    assert pop.dtype == np.int64
    assert pop.tolist() == [1, 3, 1, 0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="split"):
        ds.eval_examples("train")  # type: ignore[arg-type]


def test_index_record_docstring_example() -> None:
    record = SourceRecord(name="x", origin="x", sequences={"u1": ["b", "a", "b"], "u2": ["c"], "u3": ["a", "c", "d"]})
    got = index_record(record)
    assert got.user_ids == ["u1", "u3"]
    assert got.item_ids == ["b", "a", "c", "d"]
    assert got.sequences == [[0, 1, 0], [1, 2, 3]]


def test_text_helpers() -> None:
    assert clean_text(["Nice &amp; <b>loud</b>", " amp "], max_chars=2000) == "Nice & loud amp"
    assert clean_text("size < 5 and > 2 <!-- x -->mm", max_chars=2000) == "size < 5 and > 2 mm"
    assert clean_text("abcd", max_chars=4) == ""
    assert clean_text(None, max_chars=4) == ""
    assert truncate("one two three", 9) == "one two"
    assert truncate("abcdefgh", 4) == "abcd"
    assert compose_text(title=None, max_chars=100) is None
    assert compose_text(title="T.", categories=("a", "b"), description="D", max_chars=100) == "T. Categories: a, b. D."


def test_reprepare_without_sids_removes_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "data"
    prepare_dataset(source="lcrec", input_path=write_lcrec(tmp_path / "a", sids=SIDS), out_dir=out)
    info = prepare_dataset(source="lcrec", input_path=write_lcrec(tmp_path / "b", items=False), out_dir=out)
    assert not info["has_given_sids"]
    assert not info["has_text"]
    assert not info["has_categories"]
    assert not (out / "given_sids.json").exists()
    assert Dataset.load(out).items[0].title is None


# ---- bad input -------------------------------------------------------------------------------

def test_unknown_source(tmp_path: Path) -> None:
    with pytest.raises(SimGRError, match=r"unknown source 'nope'.*lcrec"):
        prepare_dataset(source="nope", input_path=tmp_path, out_dir=tmp_path / "out")


def test_every_named_source_has_a_reader_and_the_cli_imports_none_at_start() -> None:
    assert all(callable(get_reader(name)) for name in SOURCES)
    assert FETCHED.issubset(SOURCES)
    readers = [f"model.data.sources.{name}" for name in SOURCES]
    code = f"import sys, service.cli.main; print([m for m in {readers!r} if m in sys.modules])"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert run.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "needs --input"),
        (lambda d: d / "missing", "missing: no such file"),
        (lambda d: d, "no LC-Rec interaction file"),
        (lambda d: (d / "Bad.inter.json").write_text("{oops") and d, "Bad.inter.json: malformed JSON at line 1"),
        (lambda d: (d / "L.inter.json").write_text("[1, 2]") and d, r"L.inter.json: \(top level\): expected a JSON object, got an array"),
        (lambda d: (d / "V.inter.json").write_text('{"u": 3}') and d, "V.inter.json: u: expected a JSON array, got 3"),
        (lambda d: (d / "S.inter.json").write_text('{"u": [1, 2]}') and d, "S.inter.json: no user has >= 3"),
    ],
)
def test_lcrec_bad_input(tmp_path: Path, setup, message: str) -> None:
    with pytest.raises(SimGRError, match=message):
        prepare_dataset(source="lcrec", input_path=setup(tmp_path), out_dir=tmp_path / "out")
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_lcrec_bad_side_files(tmp_path: Path) -> None:
    raw = write_lcrec(tmp_path / "raw", sids={"10": ["<a_1>"]})
    with pytest.raises(SimGRError, match=r"Tiny.inter.json: the given semantic IDs miss 7 of 8 items"):
        prepare_dataset(source="lcrec", input_path=raw, out_dir=tmp_path / "out")
    (raw / "Tiny.index.json").write_text('{"10": "<a_1>"}')
    with pytest.raises(SimGRError, match=r"Tiny.index.json: 10: expected a JSON array, got '<a_1>'"):
        prepare_dataset(source="lcrec", input_path=raw, out_dir=tmp_path / "out")
    (raw / "Tiny.item.json").write_text('{"10": {"title": "x"},')
    with pytest.raises(SimGRError, match=r"Tiny.item.json: malformed JSON"):
        prepare_dataset(source="lcrec", input_path=raw, out_dir=tmp_path / "out")


def test_dataset_load_errors(tiny: tuple[dict, Path], tmp_path: Path) -> None:
    _, out = tiny
    with pytest.raises(SimGRError, match="not a dataset directory"):
        Dataset.load(tmp_path / "nowhere")
    lines = (out / "sequences.jsonl").read_text().splitlines()
    (out / "sequences.jsonl").write_text("\n".join([lines[0], '{"user_id": "u3", "items": [5, 0, 99]}']))
    with pytest.raises(SimGRError, match=r"sequences.jsonl: line 2: item indices must be integers in \[0, 8\)"):
        Dataset.load(out)
    (out / "sequences.jsonl").write_text(lines[0] + "\n{not json\n")
    with pytest.raises(SimGRError, match=r"sequences.jsonl: line 2: malformed JSON"):
        Dataset.load(out)
    (out / "sequences.jsonl").write_text(lines[0] + "\n")
    with pytest.raises(SimGRError, match=r"dataset.json: n_users is 3 but the files hold 1"):
        Dataset.load(out)
    (out / "items.jsonl").unlink()
    with pytest.raises(SimGRError, match=r"items.jsonl: missing"):
        Dataset.load(out)


# ---- the real LC-Rec releases (skipped when ../shared/data is absent) --------------------------

REAL = {  # name: (folder, users, items, interactions, has_text, items without categories)
    "Instruments": ("instruments", 24_772, 9_922, 206_153, False, 9_922),
    "Scientific": ("scientific", 8_317, 4_344, 58_492, True, 131),  # 131 blank in Scientific.item.json
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_lcrec(name: str, tmp_path: Path) -> None:
    folder, n_users, n_items, n_inter, has_text, no_categories = REAL[name]
    raw = SHARED_DATA / folder
    if not raw.is_dir():
        pytest.skip(f"{raw} not present")
    info = prepare_dataset(source="lcrec", input_path=raw, out_dir=tmp_path / "data", cfg=DataConfig())
    assert (info["name"], info["n_users"], info["n_items"], info["n_interactions"]) == (name, n_users, n_items, n_inter)
    assert info["n_train_samples"] == n_inter - 3 * n_users  # every user has >= 5 items
    assert info["has_text"] is has_text
    assert info["has_categories"] is has_text
    assert info["has_given_sids"]
    ds = Dataset.load(tmp_path / "data")
    assert ds.item_ids == [str(i) for i in range(n_items)]  # LC-Rec ids are already first-appearance order
    raw_inter = json.loads((raw / f"{name}.inter.json").read_text())
    user = ds.user_ids[-1]
    assert [ds.item_ids[i] for i in ds.sequences[-1]] == [str(i) for i in raw_inter[user]]
    histories, targets = ds.eval_examples("test")
    test_rows = read_jsonl(tmp_path / "data" / "split" / "test.jsonl")
    assert [r["history"] for r in test_rows] == histories
    assert [r["target"] for r in test_rows] == targets
    assert int(ds.popularity().sum()) == n_inter - 2 * n_users
    given = json.loads((tmp_path / "data" / "given_sids.json").read_text())
    assert len(given) == n_items
    assert {len(t) for t in given.values()} == {4}
    assert sum(bool(item.text and item.title) for item in ds.items) == (n_items if has_text else 0)
    assert sum(not item.categories for item in ds.items) == no_categories
