"""``simgr prepare --source events``: every format and compression gives the same dataset, column mapping
and timestamp detection, a known-answer count of every drop reason, item tables, and one-line errors."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.cli.main import main

# (user, item, epoch seconds): 4 users; u1 repeats item a; u9 has only 2 interactions
ROWS = [("u1", "a", 1_600_000_001), ("u2", "b", 1_600_000_002), ("u1", "b", 1_600_000_003),
        ("u3", "a", 1_600_000_004), ("u1", "c", 1_600_000_005), ("u2", "c", 1_600_000_006),
        ("u3", "c", 1_600_000_007), ("u2", "d", 1_600_000_008), ("u3", "d", 1_600_000_009),
        ("u1", "a", 1_600_000_010), ("u9", "a", 1_600_000_011), ("u9", "b", 1_600_000_012),
        ("u1", "d", 1_600_000_000)]  # out of order on purpose: u1's first item by time
K = ["--min-user-interactions", "3", "--min-item-interactions", "1"]


def _table(rows=ROWS, names=("user_id", "item_id", "timestamp")) -> pa.Table:
    cols = list(zip(*rows, strict=True))
    return pa.table({n: list(c) for n, c in zip(names, cols, strict=True)})


def write(path: Path, table: pa.Table) -> Path:
    """``table`` in the format named by ``path`` (gzip for a .gz suffix)."""
    name = path.name.removesuffix(".gz")
    plain = path.with_name(name)
    if name.endswith(".parquet"):
        pq.write_table(table, plain)
    elif name.endswith(".jsonl"):
        plain.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in table.to_pylist()))
    else:
        with plain.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t" if name.endswith(".tsv") else ",")
            w.writerow(table.column_names)
            w.writerows([list(r.values()) for r in table.to_pylist()])
    if path.name.endswith(".gz"):
        with plain.open("rb") as src, gzip.open(path, "wb") as dst:
            shutil.copyfileobj(src, dst)
        plain.unlink()
    return path


def prepare(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, dict | str]:
    code = main(["--log-level", "WARNING", "prepare", "--source", "events", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out.strip().splitlines()[-1]) if code == 0 else err)


def dataset_files(root: Path) -> dict[str, str]:
    return {p: (root / p).read_text() for p in ("items.jsonl", "sequences.jsonl", "item_map.json", "user_map.json",
                                                 "split/train.jsonl", "split/valid.jsonl", "split/test.jsonl")}


@pytest.mark.parametrize("name", ["log.csv", "log.tsv", "log.parquet", "log.jsonl", "log.csv.gz", "log.tsv.gz",
                                  "log.jsonl.gz"])
def test_formats_round_trip_to_the_same_dataset(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ref_log = write(tmp_path / "ref.parquet", _table())
    assert prepare(capsys, "--interactions", str(ref_log), "--out", str(tmp_path / "ref"), *K)[0] == 0
    code, info = prepare(capsys, "--interactions", str(write(tmp_path / name, _table())),
                         "--out", str(tmp_path / "ds"), *K)
    assert code == 0, info
    assert dataset_files(tmp_path / "ds") == dataset_files(tmp_path / "ref")
    seqs = [json.loads(x) for x in (tmp_path / "ds" / "sequences.jsonl").read_text().splitlines()]
    assert seqs[0] == {"user_id": "u1", "items": [0, 1, 2, 3]}  # d (t=...000) first; the repeated a dropped
    assert [s["user_id"] for s in seqs] == ["u1", "u2", "u3"]
    assert isinstance(info, dict)
    assert info["rows_read"] == len(ROWS)
    assert info["time_formats"] == ["epoch_seconds"]


def test_directory_of_parts_equals_one_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    one = write(tmp_path / "one.parquet", _table())
    parts = tmp_path / "parts"
    parts.mkdir()
    write(parts / "part-0.csv", _table(ROWS[:6]))
    write(parts / "part-1.parquet", _table(ROWS[6:]))
    (parts / "_SUCCESS").write_text("")
    assert prepare(capsys, "--interactions", str(one), "--out", str(tmp_path / "a"), *K)[0] == 0
    assert prepare(capsys, "--interactions", str(parts), "--out", str(tmp_path / "b"), *K)[0] == 0
    assert dataset_files(tmp_path / "a") == dataset_files(tmp_path / "b")


def test_column_mapping_and_time_detection(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    names = ("customer", "sku", "when")
    ms = [(u, i, t * 1000) for u, i, t in ROWS]
    iso = [(u, i, datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")) for u, i, t in ROWS]
    mapping = ["--user-col", "customer", "--item-col", "sku", "--time-col", "when"]
    results = {}
    for kind, rows in (("s", ROWS), ("ms", ms), ("iso", iso)):
        log = write(tmp_path / f"{kind}.parquet", _table(rows, names))
        code, info = prepare(capsys, "--interactions", str(log), "--out", str(tmp_path / kind), *mapping, *K)
        assert code == 0, info
        results[kind] = info
    assert results["s"]["time_formats"] == ["epoch_seconds"]
    assert results["ms"]["time_formats"] == ["epoch_milliseconds"]
    assert results["iso"]["time_formats"] == ["iso8601"]
    assert results["s"]["first_timestamp"] == results["ms"]["first_timestamp"] == "2020-09-13T12:26:40Z"
    assert results["iso"]["last_timestamp"] == "2020-09-13T12:26:49Z"  # u3 d; u9 and the repeat were dropped
    assert dataset_files(tmp_path / "s") == dataset_files(tmp_path / "ms") == dataset_files(tmp_path / "iso")
    code, err = prepare(capsys, "--interactions", str(tmp_path / "s.parquet"), "--out", str(tmp_path / "x"))
    assert code == 2
    assert "no user column found" in str(err)


def test_every_drop_reason_is_counted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = [
        ("u1", "a", "1", "click"), ("u1", "b", "2", "purchase"), ("u1", "c", "3", "click"),
        ("u1", "a", "4", "click"),  # repeat
        ("u2", "b", "1", "click"), ("u2", "c", "2", "click"), ("u2", "d", "3", "click"),
        ("u3", "a", "1", "click"), ("u3", "c", "2", "click"), ("u3", "d", "3", "click"),
        ("", "a", "5", "click"), ("u2", "", "5", "click"), ("u2", "a", "", "click"),  # missing_field x3
        ("u2", "a", "6", "view"), ("u3", "b", "6", "view"),  # event_type x2
        ("u1", "d", "yesterday", "click"),  # unparsable_time
        ("u1", "zzz", "7", "click"), ("u3", "zzz", "7", "click"),  # item_not_in_table x2
        ("u9", "a", "1", "click"), ("u9", "b", "2", "click"),  # k_core: u9 has 2 < 3
    ]
    log = write(tmp_path / "log.csv", _table(rows, ("user_id", "item_id", "timestamp", "event")))
    items = write(tmp_path / "items.csv", pa.table({"item_id": list("abcd"), "title": list("ABCD")}))
    code, info = prepare(capsys, "--interactions", str(log), "--items", str(items), "--out", str(tmp_path / "ds"),
                         "--event-col", "event", "--keep-events", "click,purchase", *K)
    assert code == 0, info
    assert isinstance(info, dict)
    assert info["rows_dropped"] == {"missing_field": 3, "event_type": 2, "unparsable_time": 1,
                                    "item_not_in_table": 2, "repeat": 1, "k_core": 2}
    assert info["rows_read"] == len(rows)
    assert info["rows_kept"] == info["n_interactions"] == 9
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["rows_dropped"] == info["rows_dropped"]
    code, info = prepare(capsys, "--interactions", str(log), "--items", str(items), "--out", str(tmp_path / "r"),
                         "--event-col", "event", "--keep-events", "click,purchase", "--keep-repeats", *K)
    assert isinstance(info, dict)
    assert info["rows_dropped"]["repeat"] == 0
    assert info["n_interactions"] == 10


def test_item_table_lists_nulls_unicode_attributes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    log = write(tmp_path / "log.parquet", _table())
    items = pa.table({
        "item_id": ["a", "b", "c", "d"], "title": ["Gitarre für Kinder", None, "Piano 🎹", "Drum"],
        "description": ["<b>Six</b> strings", "Bow &amp; case", None, "Loud"],
        "summary": ["acoustic", None, "digital", "snare"],
        "categories": [["Music", "Guitars"], None, ["Music", "Keys"], []],
        "price": [99.5, None, 300.0, 45.0], "brand": ["Ümlaut", "Fiddle Co", None, "Beat"],
    })
    pq.write_table(items, tmp_path / "items.parquet")
    code, info = prepare(capsys, "--interactions", str(log), "--items", str(tmp_path / "items.parquet"),
                         "--text-cols", "description,summary", "--out", str(tmp_path / "ds"), *K)
    assert code == 0, info
    rows = {r["item_id"]: r for r in map(json.loads, (tmp_path / "ds" / "items.jsonl").read_text().splitlines())}
    assert rows["a"]["title"] == "Gitarre für Kinder"
    assert rows["a"]["text"] == "Gitarre für Kinder. Categories: Music, Guitars. Six strings acoustic."
    assert rows["a"]["categories"] == ["Music", "Guitars"]
    assert rows["a"]["attributes"] == {"price": 99.5, "brand": "Ümlaut"}
    assert rows["b"]["title"] is None
    assert rows["b"]["text"] == "Bow & case."
    assert rows["b"]["attributes"] == {"brand": "Fiddle Co"}
    assert rows["c"]["text"] == "Piano 🎹. Categories: Music, Keys. digital."
    csv_items = write(tmp_path / "items.csv", pa.table({"item_id": list("abcd"), "categories": ["X|Y", "", "Z", "X"]}))
    code, info = prepare(capsys, "--interactions", str(log), "--items", str(csv_items), "--category-sep", "|",
                         "--out", str(tmp_path / "ds2"), *K)
    assert code == 0, info
    cats = {r["item_id"]: r["categories"] for r in map(json.loads, (tmp_path / "ds2" / "items.jsonl").open())}
    assert cats == {"a": ["X", "Y"], "b": [], "c": ["Z"], "d": ["X"]}


def test_bad_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = write(tmp_path / "log.parquet", _table())
    garbage = tmp_path / "broken.parquet"
    garbage.write_bytes(b"PAR1 not really")
    empty = write(tmp_path / "empty.csv", _table([("u1", "a", "x")]))
    cases = [
        (["--interactions", str(tmp_path / "nope.csv")], "no such file"),
        (["--interactions", str(garbage)], "cannot read"),
        (["--interactions", str(tmp_path / "log.xlsx")], "no such file"),
        (["--interactions", str(good), "--time-col", "when"], "no time column 'when'"),
        (["--interactions", str(empty)], "no usable rows"),
        (["--interactions", str(good), "--keep-events", "click"], "--keep-events needs --event-col"),
        (["--interactions", str(good), "--items", str(good), "--item-id-col", "sku"], "no item id column 'sku'"),
        ([], "needs --interactions"),
    ]
    (tmp_path / "log.xlsx").write_text("x")
    cases[2] = (["--interactions", str(tmp_path / "log.xlsx")], "unknown file type")
    for args, message in cases:
        out = tmp_path / "out"
        code, err = prepare(capsys, *args, "--out", str(out), *K)
        assert code == 2, args
        assert isinstance(err, str)
        assert err.startswith("simgr: error: "), err
        assert err.count("\n") == 1, err
        assert message in err, err
        assert not (out / "dataset.json").exists()
