"""The committed reports against their records: every table in a README is what its run records give, to
the digit, and the prose beside each (reports/quality, reports/paper's notes) quotes its numbers and its
two-std verdicts as the records give them."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_helpers import load_benchmark

from model.analysis.quality_popularity import THIRDS, popularity_cells
from model.analysis.quality_runs import Row, TableSpec, load_table, quality_table
from model.analysis.readme import read_block
from model.analysis.runfiles import verdict

ROOT = Path(__file__).resolve().parents[1]


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
# How the prose words the two-std rule's verdict of a row against its reference.
WORDS = {"a>b": "ahead", "b>a": "behind", "tie": "within two std"}


def _both_blocks_are_their_records(name: str) -> tuple[Row, Row]:
    """reports/NAME's overall and by-third blocks in reports/quality's README are what its records give;
    returns its first row and its reference."""
    report = ROOT / "reports" / name
    out = quality_table(report, readme=QUALITY_README, check=True)
    assert out["changed"] is False
    assert read_block(QUALITY_README, f"quality:{name}:popularity") == out["popularity"]
    table, rows = load_table(report)
    return rows[table.rows[0].label], rows[table.reference]


def _section(number: int) -> str:
    """Section NUMBER of reports/quality's README on one line, bold marks dropped."""
    return " ".join(QUALITY_README.read_text().split(f"\n## {number}. ")[1].replace("**", "").split())


def _thirds_verdicts(row: Row, ref: Row) -> str:
    """The verdict on each popularity third as the prose gives it: "head within two std, torso ahead, ..."."""
    return ", ".join(f"{third} {WORDS[verdict(a, b)]}" for third, a, b in
                     zip(THIRDS, popularity_cells(row.records) or [], popularity_cells(ref.records) or [], strict=True))


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
    assert f"{pick.test.text()} against {ref.test.text()}, {WORDS[verdict(pick.test, ref.test)]}" in prose


@pytest.mark.parametrize("name", ["scientific_popularity", "movielens_popularity"])
def test_the_popularity_split_is_its_records_and_the_prose_gives_each_thirds_verdict(name: str) -> None:
    """reports/quality section 8: both blocks of reports/NAME are what its records give, SimGR and the
    reference SASRec have three seeds each, and the section states the two-std verdict on each third as
    the records give it."""
    simgr, sasrec = _both_blocks_are_their_records(name)
    assert (simgr.test.n, sasrec.test.n) == (3, 3)
    dataset = name.split("_")[0].capitalize().replace("Movielens", "MovieLens-100k")
    assert f"{dataset}, SimGR against SASRec by third: {_thirds_verdicts(simgr, sasrec)}." in _section(8)


@pytest.mark.parametrize("name", ["scientific_shuffled", "movielens_shuffled"])
def test_the_shuffled_ids_control_is_its_records_and_the_prose_gives_its_verdicts(name: str) -> None:
    """reports/quality section 9: both blocks of reports/NAME are what its records give; the first row's runs
    dealt the IDs out again (``shuffled_ids``) and the reference's, each item's own ID, did not, over the
    same seeds; and the section states the two-std verdict overall and on each third as the records give it."""
    shuffled, own = _both_blocks_are_their_records(name)
    assert [(r.line.model_extra or {}).get("shuffled_ids") for r in shuffled.records] == [True] * shuffled.test.n
    assert not any("shuffled_ids" in (r.line.model_extra or {}) for r in own.records)
    assert sorted(r.line.seed for r in shuffled.records) == sorted(r.line.seed for r in own.records)
    assert shuffled.test.n >= 3
    dataset = name.split("_")[0].capitalize().replace("Movielens", "MovieLens-100k")
    assert (f"{dataset}, shuffled IDs against each item's own: {shuffled.test.text()} against {own.test.text()}, "
            f"{WORDS[verdict(shuffled.test, own.test)]}; by third: {_thirds_verdicts(shuffled, own)}.") in _section(9)


def test_the_movielens_temperature_table_is_its_records_and_its_prose_quotes_the_verdict() -> None:
    """reports/quality section 10: reports/movielens_tau's blocks are what its records give, SimGR at τ 0.2
    and the reference SASRec have three seeds each over the same seeds, and the section's prose quotes both
    with the two-std verdict between them; τ 0.15, the second row, validates no higher, as the prose says."""
    pick, ref = _both_blocks_are_their_records("movielens_tau")
    assert {r.line.model_extra["tau"] for r in pick.records if r.line.model_extra} == {0.2}
    assert sorted(r.line.seed for r in pick.records) == sorted(r.line.seed for r in ref.records) == [1, 2, 42]
    assert (f"MovieLens-100k at τ 0.2, SimGR against SASRec: {pick.test.text()} against {ref.test.text()}, "
            f"{WORDS[verdict(pick.test, ref.test)]}") in _section(10)
    table, rows = load_table(ROOT / "reports" / "movielens_tau")
    cooler = rows[table.rows[1].label]  # τ 0.15: three seeds, not picked, since it does not validate higher
    assert [r.line.model_extra["tau"] for r in cooler.records if r.line.model_extra] == [0.15] * 3
    assert cooler.valid.mean <= pick.valid.mean
    assert (f"over three seeds it validates {cooler.valid.text()} against τ 0.2's {pick.valid.text()} and tests "
            f"{cooler.test.text()} against {pick.test.text()}") in _section(10)


def test_the_instruments_temperature_table_is_its_records_and_its_prose_quotes_them() -> None:
    """reports/quality section 11: reports/instruments_tau's blocks are what its records give, both runs are
    the recipe at one seed, at τ 0.2 and at the recipe's own τ, and the prose quotes their validation and
    the recipe's test against the paper's 0.0868."""
    warm, recipe = _both_blocks_are_their_records("instruments_tau")
    assert [(r.line.model_extra or {}).get("tau") for r in warm.records + recipe.records] == [0.2, 0.1]
    assert {(r.line.model_extra or {}).get("recipe") for r in warm.records + recipe.records} == {"instruments"}
    assert [r.line.seed for r in warm.records + recipe.records] == [42, 42]
    section = _section(11)
    assert (f"τ 0.2 dropped: validation {warm.valid.mean:.4f} against {recipe.valid.mean:.4f}, a gap of "
            f"{recipe.valid.mean - warm.valid.mean:.4f}") in section
    assert f"The recipe at a3b960f: test {recipe.test.mean:.4f}" in section
    assert recipe.test.mean > 0.0868


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
