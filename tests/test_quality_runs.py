"""Committed quality.py run records and the table built from them: known-answer rows, a loud error for a
missing record, a seed counted twice or records of one row that trained differently, the README block
rewritten or checked by `simgr quality-table`, and a record's round trip (the committed reports against their
records: tests/test_committed_reports.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from model.analysis.quality_runs import (
    QualityRecord,
    load_table,
    quality_table,
    render_table,
    write_record,
)
from model.analysis.readme import read_block
from model.data.jsonio import read_validated
from model.errors import SimGRError
from model.training.precision import cpu_bf16_units
from service.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def _line(seed: int, ndcg: float, **settings: Any) -> dict[str, Any]:
    return {"ndcg@10": ndcg, "valid_ndcg@10": ndcg + 0.01, "seed": seed, "epochs": 20 + seed,
            "best_epoch": 10 + seed, "train_samples_per_s": 1000.0 * seed, "minutes": 30.1,
            "malloc": "tcmalloc", "method": "simgr", "lr": 0.001, **settings}


def _report(tmp_path: Path, rows: dict[str, list[dict[str, Any]]], reference: str) -> Path:
    """reports/<name>/ with one record per line and a table.json listing them by row."""
    report = tmp_path / "rep"
    (report / "runs").mkdir(parents=True)
    spec_rows = []
    for label, lines in rows.items():
        names = []
        for n, line in enumerate(lines):
            name = f"{label.split()[0].lower()}-{n}.json"
            record = {"command": "python benchmarks/quality.py", "machine": "m1", "date": "2026-12-06",
                      "line": line}
            (report / "runs" / name).write_text(json.dumps(record))
            names.append(name)
        spec_rows.append({"label": label, "runs": names})
    (report / "table.json").write_text(json.dumps({"name": "toy", "reference": reference, "rows": spec_rows}))
    return report


def _toy(tmp_path: Path) -> Path:
    return _report(tmp_path, {
        "SimGR three": [_line(1, 0.1), _line(2, 0.2), _line(3, 0.3)],
        "One seed": [_line(1, 0.05)],
        "SASRec two": [_line(1, 0.01, method="sasrec"), _line(2, 0.03, method="sasrec")],
    }, reference="SASRec two")


def test_rows_known_answers(tmp_path: Path) -> None:
    table = render_table(*load_table(_toy(tmp_path))).splitlines()
    assert table[0].startswith("| setting | seeds | test NDCG@10 (each seed) | valid NDCG@10 |")
    simgr, one, sasrec = table[2:]
    # mean 0.2, sample std 0.1; the reference 0.02 ± 0.0141; 2 std of the difference 2 * sqrt(0.01 + 0.0002)
    assert simgr == ("| SimGR three | 1, 2, 3 | 0.2000 ± 0.1000 (0.1000, 0.2000, 0.3000) | 0.2100 ± 0.1000 "
                     "| 21-23 (11-13) | 1,000-3,000 | m1 | +0.1800, within 2 std (2 std = 0.2020) |")
    assert one == "| One seed | 1 | 0.0500 | 0.0600 | 21 (11) | 1,000 | m1 | +0.0300, no claim: one seed |"
    assert sasrec.endswith("| 0.0200 ± 0.0141 (0.0100, 0.0300) | 0.0300 ± 0.0141 | 21-22 (11-12) | "
                           "1,000-2,000 | m1 | the reference |")


def test_a_gap_beyond_two_sigma_is_a_claim(tmp_path: Path) -> None:
    report = _report(tmp_path, {"A": [_line(1, 0.30), _line(2, 0.31)], "B": [_line(1, 0.10), _line(2, 0.11)]},
                     reference="B")
    assert render_table(*load_table(report)).splitlines()[2].endswith("| +0.2000, ahead (2 std = 0.0200) |")
    report = _report(tmp_path / "2", {"A": [_line(1, 0.10), _line(2, 0.11)], "B": [_line(1, 0.30), _line(2, 0.31)]},
                     reference="B")
    assert render_table(*load_table(report)).splitlines()[2].endswith("| -0.2000, behind (2 std = 0.0200) |")


def test_runs_the_budget_ended_while_still_rising_are_counted(tmp_path: Path) -> None:
    """A line's still_improving is a measurement: it marks the epochs cell, and a row may mix it (or lines
    from before the key) without reading as two settings."""
    report = _report(tmp_path, {
        "Some": [_line(1, 0.1, still_improving=True), _line(2, 0.2, still_improving=False), _line(3, 0.3)],
        "All": [_line(1, 0.1, still_improving=True), _line(2, 0.2, still_improving=True)],
        "None": [_line(1, 0.1, still_improving=False)],
    }, reference="None")
    cells = [row.split(" | ")[4] for row in render_table(*load_table(report)).splitlines()[2:]]
    assert cells == ["21-23 (11-13), 1 of 3 still rising", "21-22 (11-12), still rising", "21 (11)"]


def test_a_missing_record_names_every_missing_file(tmp_path: Path) -> None:
    report = _toy(tmp_path)
    (report / "runs" / "simgr-0.json").unlink()
    (report / "runs" / "sasrec-1.json").unlink()
    with pytest.raises(SimGRError, match=r"2 run record.s. missing: simgr-0.json, sasrec-1.json$"):
        load_table(report)


def test_a_record_in_no_row_is_named(tmp_path: Path) -> None:
    report = _toy(tmp_path)
    (report / "runs" / "simgr-extra.json").write_bytes((report / "runs" / "simgr-0.json").read_bytes())
    (report / "runs" / "z-dropped.json").write_text("{}")
    with pytest.raises(SimGRError, match=r"2 run record.s. in no row: simgr-extra.json, z-dropped.json$"):
        load_table(report)


@pytest.mark.parametrize(("second", "error"), [
    (_line(1, 0.2), r"counts a seed twice \(\[1, 1\]\)"),
    (_line(2, 0.2, lr=0.002), r"a-0.json and a-1.json differ in lr \(0.001 against 0.002\)"),
])
def test_one_row_is_one_setting_over_distinct_seeds(tmp_path: Path, second: dict[str, Any], error: str) -> None:
    report = _report(tmp_path, {"A": [_line(1, 0.1), second]}, reference="A")
    with pytest.raises(SimGRError, match=error):
        load_table(report)


def test_launch_details_and_keys_one_line_lacks_do_not_split_a_row(tmp_path: Path) -> None:
    late = _line(2, 0.2, malloc="system", recipe="instruments", smoothing_prefix=0)
    report = _report(tmp_path, {"A": [_line(1, 0.1), late]}, reference="A")
    assert "| A | 1, 2 | 0.1500 ± 0.0707 " in render_table(*load_table(report))


def test_the_spec_is_validated(tmp_path: Path) -> None:
    report = _toy(tmp_path)
    spec = json.loads((report / "table.json").read_text())
    (report / "table.json").write_text(json.dumps({**spec, "reference": "nobody"}))
    with pytest.raises(SimGRError, match="reference 'nobody' is not a row label"):
        load_table(report)


def test_cli_rewrites_then_checks_the_readme_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, readme = _toy(tmp_path), tmp_path / "README.md"
    readme.write_text("intro\n<!-- quality:toy:start -->\nold\n<!-- quality:toy:end -->\nrest\n")
    assert main(["quality-table", "--report", str(report), "--readme", str(readme), "--check"]) == 2
    assert "the 'quality:toy' block is not the table" in capsys.readouterr().err
    assert "\nold\n" in readme.read_text()  # --check changes nothing
    assert main(["quality-table", "--report", str(report), "--readme", str(readme)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["changed"], out["rows"][0]["test_ndcg@10"], out["rows"][0]["test_std"]) == (True, 0.2, 0.1)
    text = readme.read_text()
    assert text == "intro\n<!-- quality:toy:start -->\n" + out["table"] + "<!-- quality:toy:end -->\nrest\n"
    assert main(["quality-table", "--report", str(report), "--readme", str(readme), "--check"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False
    assert main(["quality-table", "--report", str(report), "--check"]) == 2
    assert "--check compares a README block: give --readme too" in capsys.readouterr().err
    assert main(["quality-table", "--report", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"simgr: error: {tmp_path}/table.json: missing: a quality report directory "
                                       "holds table.json and runs/\n")


def test_the_popularity_split_is_its_own_block_against_the_reference_third_by_third(tmp_path: Path) -> None:
    split = {"SimGR": [(0.30, 0.20, 0.10), (0.32, 0.22, 0.16)], "SASRec": [(0.31, 0.20, 0.02), (0.33, 0.20, 0.04)]}
    report = _report(tmp_path, {label: [_line(seed, sum(s) / 3, **{"ndcg@10_by_popularity": list(s)})
                                        for seed, s in enumerate(thirds, 1)] for label, thirds in split.items()},
                     reference="SASRec")
    readme = tmp_path / "README.md"
    readme.write_text("<!-- quality:toy:start -->\n<!-- quality:toy:end -->\n")
    assert main(["quality-table", "--report", str(report), "--readme", str(readme)]) == 0  # no block: no split
    assert "popularity" not in readme.read_text()
    readme.write_text(readme.read_text() + "<!-- quality:toy:popularity:start -->\n<!-- quality:toy:popularity:end -->\n")
    assert main(["quality-table", "--report", str(report), "--readme", str(readme), "--check"]) == 2
    assert main(["quality-table", "--report", str(report), "--readme", str(readme)]) == 0
    lines = read_block(readme, "quality:toy:popularity").splitlines()
    assert lines[0] == ("| setting | seeds | head third: test NDCG@10 | torso third: test NDCG@10 "
                        "| tail third: test NDCG@10 |")
    # head: 0.31 ± 0.0141 against 0.32 ± 0.0141, 2 std = 2 * 0.02; tail: 0.13 ± 0.0424 against 0.03 ± 0.0141
    assert lines[2] == ("| SimGR | 1, 2 | 0.3100 ± 0.0141 (-0.0100, within 2 std (2 std = 0.0400)) "
                        "| 0.2100 ± 0.0141 (+0.0100, within 2 std (2 std = 0.0283)) "
                        "| 0.1300 ± 0.0424 (+0.1000, ahead (2 std = 0.0894)) |")
    assert lines[3] == "| SASRec | 1, 2 | 0.3200 ± 0.0141 | 0.2000 ± 0.0000 | 0.0300 ± 0.0141 |"
    assert main(["quality-table", "--report", str(report), "--readme", str(readme), "--check"]) == 0
    plain = _toy(tmp_path / "plain")  # records from before the split: no block wanted, none written
    assert quality_table(plain)["popularity"] is None


def test_write_record_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    path = tmp_path / "runs" / "a-s1.json"
    line = _line(1, 0.0876, recipe="instruments")
    written = write_record(path, line, ["benchmarks/quality.py", "--seed", "1", "--workdir", "a b"])
    back = read_validated(path, QualityRecord, what="quality run record")
    assert back == written
    assert back.line.model_dump(by_alias=True, exclude_unset=True) == line
    assert back.command == "OMP_NUM_THREADS=2 python benchmarks/quality.py --seed 1 --workdir 'a b'"
    cores, rest = back.machine.split("-core ", 1)
    assert cores.isdigit()
    units = cpu_bf16_units()
    assert rest.endswith(f", with {' and '.join(units)}" if units else ", no bf16 units")
    assert f", {torch.backends.cpu.get_cpu_capability()}, " in rest
    assert write_record(tmp_path / "b.json", line, ["q.py"], commit="abc123").commit == "abc123"  # the start's
