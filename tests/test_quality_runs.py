"""Committed quality.py run records and the table built from them: known-answer rows, a loud error for a
missing record, a seed counted twice or records of one row that trained differently, the README block
rewritten or checked by `simgr quality-table`, and the committed README matching the committed records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from bench_helpers import load_benchmark

from model.analysis.quality_popularity import THIRDS, popularity_cells
from model.analysis.quality_runs import (
    QualityRecord,
    Row,
    TableSpec,
    load_table,
    quality_table,
    render_table,
    write_record,
)
from model.analysis.readme import read_block
from model.analysis.runfiles import verdict
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


def test_committed_readme_block_is_the_committed_records_table() -> None:
    """The README's Instruments table is what reports/instruments_30min's records give, to the digit."""
    out = quality_table(ROOT / "reports" / "instruments_30min", readme=ROOT / "README.md", check=True)
    assert out["changed"] is False
    recipe = out["rows"][0]
    assert (recipe["seeds"], recipe["test_ndcg@10"]) == (5, 0.0879)


def _paper_notes_bullet(start: str, next_bullet: str) -> str:
    """The bullet of reports/paper/notes.md that opens with ``start``, up to ``next_bullet``, on one line
    (the notes wrap at 110)."""
    notes = (ROOT / "reports" / "paper" / "notes.md").read_text()
    bullet = notes[notes.index(start):]
    return " ".join(bullet[:bullet.index(next_bullet)].split())


QUALITY_README = ROOT / "reports" / "quality" / "README.md"


def _scientific_pick_and_reference(name: str) -> tuple[TableSpec, dict[str, Row]]:
    """reports/NAME's table, checked to be what its records give in reports/quality's README, and its rows;
    the first row, SimGR's pick, has three seeds as the reference SASRec has, and is ahead of it by the
    two-std rule."""
    report = ROOT / "reports" / name
    assert quality_table(report, readme=QUALITY_README, check=True)["changed"] is False
    table, rows = load_table(report)
    pick, ref = rows[table.rows[0].label], rows[table.reference]
    assert (pick.test.n, ref.test.n) == (3, 3)
    assert verdict(pick.test, ref.test) == "a>b"
    return table, rows


def test_the_scientific_table_is_its_records_and_simgr_leads_it_by_two_sigma() -> None:
    """reports/quality section 2's converged Scientific table is what reports/scientific_converged's records
    give, its first row, SimGR's pick, is ahead of the reference SASRec by the two-std rule, and the paper
    notes' Scientific bullet quotes both as the records give them."""
    table, rows = _scientific_pick_and_reference("scientific_converged")
    bullet = _paper_notes_bullet("**Table 3, Scientific**", "\n- ")
    assert rows[table.rows[0].label].test.text() in bullet
    assert rows[table.reference].test.text() in bullet


def test_the_second_machine_table_picks_on_validation_and_simgr_leads_it_by_two_sigma() -> None:
    """reports/quality section 2's table from the AMD EPYC is what reports/scientific_converged_epyc's
    records give, its first row is the SimGR row best on validation, that row is ahead of the reference
    SASRec by the two-std rule, and the section's prose quotes both as the records give them."""
    table, rows = _scientific_pick_and_reference("scientific_converged_epyc")
    simgr = [label for label in rows if label.startswith("SimGR")]
    assert table.rows[0].label == max(simgr, key=lambda label: rows[label].valid.mean)
    pick, ref = rows[table.rows[0].label], rows[table.reference]
    text = QUALITY_README.read_text()
    prose = " ".join(text[text.index("<!-- quality:scientific_converged_epyc:end -->"):].split("\n\n**")[0].split())
    assert f"{pick.test.text()} against {ref.test.text()}" in prose


def test_the_movielens_table_picks_both_methods_on_validation_and_its_prose_quotes_the_verdict() -> None:
    """reports/quality section 7's table is what reports/movielens_converged's records give, its first row
    and its reference are the SimGR and SASRec rows best on validation, both with three seeds, and the
    section's prose quotes both as the records give them with the two-std verdict between them. The picks
    were made on seed 42, the one seed every row has."""
    report = ROOT / "reports" / "movielens_converged"
    assert quality_table(report, readme=QUALITY_README, check=True)["changed"] is False
    table, rows = load_table(report)

    def seed42_valid(label: str) -> float:
        return next(r.line.valid_ndcg10 for r in rows[label].records if r.line.seed == 42)

    best = {m: max((label for label in rows if label.startswith(m)), key=seed42_valid) for m in ("SimGR", "SASRec")}
    assert (table.rows[0].label, table.reference) == (best["SimGR"], best["SASRec"])
    pick, ref = rows[table.rows[0].label], rows[table.reference]
    assert (pick.test.n, ref.test.n) == (3, 3)
    text = QUALITY_README.read_text()
    prose = " ".join(text[text.index("<!-- quality:movielens_converged:end -->"):].split("\n\n**")[0].split())
    word = {"a>b": "ahead", "b>a": "behind", "tie": "within two std"}[verdict(pick.test, ref.test)]
    assert f"{pick.test.text()} against {ref.test.text()}, {word}" in prose


@pytest.mark.parametrize("name", ["scientific_popularity", "movielens_popularity"])
def test_the_popularity_split_is_its_records_and_the_prose_gives_each_thirds_verdict(name: str) -> None:
    """reports/quality section 8: both blocks of reports/NAME are what its records give, SimGR and the
    reference SASRec have three seeds each, and the section states the two-std verdict on each third as
    the records give it."""
    report = ROOT / "reports" / name
    out = quality_table(report, readme=QUALITY_README, check=True)
    assert out["changed"] is False
    assert read_block(QUALITY_README, f"quality:{name}:popularity") == out["popularity"]
    table, rows = load_table(report)
    simgr, sasrec = (rows[label].records for label in (table.rows[0].label, table.reference))
    assert (len(simgr), len(sasrec)) == (3, 3)
    words = {"a>b": "ahead", "b>a": "behind", "tie": "within two std"}
    thirds = [f"{third} {words[verdict(a, b)]}" for third, a, b in
              zip(THIRDS, popularity_cells(simgr) or [], popularity_cells(sasrec) or [], strict=True)]
    section = " ".join(QUALITY_README.read_text().split("\n## 8. ")[1].split())
    dataset = name.split("_")[0].capitalize().replace("Movielens", "MovieLens-100k")
    assert f"{dataset}, SimGR against SASRec by third: {', '.join(thirds)}." in section


@pytest.mark.parametrize("name", ["scientific_shuffled", "movielens_shuffled"])
def test_the_shuffled_ids_control_is_its_records_and_the_prose_gives_its_verdicts(name: str) -> None:
    """reports/quality section 9: both blocks of reports/NAME are what its records give; the first row's runs
    dealt the IDs out again (``shuffled_ids``) and the reference's, each item's own ID, did not, over the
    same seeds; and the section states the two-std verdict overall and on each third as the records give it."""
    report = ROOT / "reports" / name
    out = quality_table(report, readme=QUALITY_README, check=True)
    assert out["changed"] is False
    assert read_block(QUALITY_README, f"quality:{name}:popularity") == out["popularity"]
    table, rows = load_table(report)
    shuffled, own = rows[table.rows[0].label], rows[table.reference]
    assert [(r.line.model_extra or {}).get("shuffled_ids") for r in shuffled.records] == [True] * shuffled.test.n
    assert not any("shuffled_ids" in (r.line.model_extra or {}) for r in own.records)
    assert sorted(r.line.seed for r in shuffled.records) == sorted(r.line.seed for r in own.records)
    assert shuffled.test.n >= 3
    words = {"a>b": "ahead", "b>a": "behind", "tie": "within two std"}
    thirds = [f"{third} {words[verdict(a, b)]}" for third, a, b in
              zip(THIRDS, popularity_cells(shuffled.records) or [], popularity_cells(own.records) or [], strict=True)]
    section = " ".join(QUALITY_README.read_text().split("\n## 9. ")[1].split())
    dataset = name.split("_")[0].capitalize().replace("Movielens", "MovieLens-100k")
    assert (f"{dataset}, shuffled IDs against each item's own: {shuffled.test.text()} against {own.test.text()}, "
            f"{words[verdict(shuffled.test, own.test)]}; by third: {', '.join(thirds)}.") in section


def test_the_movielens_temperature_table_is_its_records_and_its_prose_quotes_the_verdict() -> None:
    """reports/quality section 10: reports/movielens_tau's blocks are what its records give, SimGR at τ 0.2
    and the reference SASRec have three seeds each over the same seeds, and the section's prose quotes both
    with the two-std verdict between them."""
    report = ROOT / "reports" / "movielens_tau"
    out = quality_table(report, readme=QUALITY_README, check=True)
    assert out["changed"] is False
    assert read_block(QUALITY_README, "quality:movielens_tau:popularity") == out["popularity"]
    table, rows = load_table(report)
    pick, ref = rows[table.rows[0].label], rows[table.reference]
    assert {r.line.model_extra["tau"] for r in pick.records if r.line.model_extra} == {0.2}
    assert sorted(r.line.seed for r in pick.records) == sorted(r.line.seed for r in ref.records) == [1, 2, 42]
    words = {"a>b": "ahead", "b>a": "behind", "tie": "within two std"}
    section = " ".join(QUALITY_README.read_text().split("\n## 10. ")[1].split())
    assert (f"MovieLens-100k at τ 0.2, SimGR against SASRec: {pick.test.text()} against {ref.test.text()}, "
            f"{words[verdict(pick.test, ref.test)]}") in section


def test_the_recipe_row_holds_runs_of_the_recipe_as_it_stands() -> None:
    """The first row, "the recipe", is made of runs whose settings are what `--recipe instruments` sets now."""
    _, now = load_benchmark("quality").parse_args(["--data", "d", "--recipe", "instruments"])
    table, rows = load_table(ROOT / "reports" / "instruments_30min")
    first = rows[table.rows[0].label]
    assert "the recipe" in table.rows[0].label
    fields = ("preset", "label_smoothing", "dropout", "input_dropout", "hidden_dropout", "tau", "ema_decay",
              "unique_codes", "autocast", "uniqueness", "lr")
    got = {tuple(r.line.model_dump()[f] for f in fields) for r in first.records}
    assert got == {tuple(getattr(now, f) for f in fields)}


def test_the_paper_report_quotes_the_recipe_and_the_reference_as_the_records_give_them() -> None:
    """reports/paper's notes read the 30-minute recipe and the SASRec reference against the paper, so
    they quote each row's test mean ± std as the committed records give it."""
    table, rows = load_table(ROOT / "reports" / "instruments_30min")
    bullet = _paper_notes_bullet("**Held with both tuned for 30 minutes**", "\n  - ")
    for label in (table.rows[0].label, table.reference):
        assert rows[label].test.text() in bullet, (label, rows[label].test.text())


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
