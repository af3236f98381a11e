"""Committed `benchmarks/quality.py` runs (reports/<name>/runs/*.json) and the table built from them.

A run record holds one quality.py JSON line as printed, plus where it came from: the command, the
machine, the date and the commit. ``reports/<name>/table.json`` names the rows of the table and the
records each row aggregates (one per seed). The table is built from those files only: a missing record,
a record in no row, two records of one row that differ in a setting, or a seed counted twice is an error
naming the files, never a quietly different number. Mean and sample std over seeds, and the
two-standard-deviation rule for a claim, are those of `simgr compare` (model/analysis/runfiles.py).

    python benchmarks/quality.py ... --record reports/instruments_30min/runs/simgr-ls0.3-s5.json
    simgr quality-table --report reports/instruments_30min --readme README.md          # rewrite its block
    simgr quality-table --report reports/instruments_30min --readme README.md --check  # or only compare
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.analysis.quality_popularity import render_popularity
from model.analysis.readme import has_block, read_block, replace_block
from model.analysis.runfiles import Cell, against, mean_std
from model.data.jsonio import read_validated, write_atomic
from model.errors import SimGRError

# A line's measurements; every other key is a setting, which must agree across the runs of one row.
# `malloc` and `recipe` are how a run was launched, not what it trained: the same flags under two mallocs
# or spelled out instead of named by a recipe are the same setting.
MEASURED = frozenset({"hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "coverage@10", "entropy@10", "seconds",
                      "valid_ndcg@10", "epochs", "best_epoch", "still_improving", "train_samples_per_s",
                      "eval_users_per_s", "minutes", "seed", "malloc", "recipe", "ndcg@10_by_popularity"})


class QualityLine(BaseModel):
    """The JSON line quality.py prints. Only the fields the table reads are declared; the rest are kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    ndcg10: float = Field(alias="ndcg@10")  # test NDCG@10 of the best-validation checkpoint
    valid_ndcg10: float = Field(alias="valid_ndcg@10")  # the validation NDCG@10 that picked it
    seed: int
    epochs: int  # epochs run (the last one may be partial under the budget)
    best_epoch: int
    still_improving: bool | None = None  # the budget ended the run with validation still rising (None: not printed)
    train_samples_per_s: float
    # test NDCG@10 of the head, torso and tail thirds of the users by target popularity (None: not printed)
    ndcg10_by_popularity: tuple[float, float, float] | None = Field(default=None, alias="ndcg@10_by_popularity")

    def settings(self) -> dict[str, Any]:
        """Every key of the line that is not a measurement, as printed."""
        return {k: v for k, v in self.model_dump(by_alias=True).items() if k not in MEASURED}


class QualityRecord(BaseModel):
    """One committed run: the line and its provenance."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    command: str  # as run, with the environment variables that matter (OMP_NUM_THREADS, LD_PRELOAD)
    machine: str  # core count, CPU model, vector ISA and bf16 units (older records: no ISA)
    date: str  # UTC, YYYY-MM-DD
    commit: str = ""  # the project's commit the run used, "-dirty" with local changes; "" where not recorded
    note: str = ""  # anything else a reader needs, e.g. where a line recorded before this format was published
    line: QualityLine


class TableRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str = Field(min_length=1)
    runs: list[str] = Field(min_length=1)  # record files under runs/, one per seed


class TableSpec(BaseModel):
    """reports/<name>/table.json."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")  # the README block's name: <!-- quality:NAME:start -->
    reference: str  # label of the row every other row's test NDCG@10 is compared with
    rows: list[TableRow] = Field(min_length=1)

    @model_validator(mode="after")
    def _labels(self) -> TableSpec:
        labels = [r.label for r in self.rows]
        if len(set(labels)) != len(labels):
            raise ValueError("row labels must be unique")
        if self.reference not in labels:
            raise ValueError(f"reference {self.reference!r} is not a row label")
        return self


class Row(NamedTuple):
    """One row's records and their aggregates over seeds."""

    records: list[QualityRecord]
    test: Cell  # test NDCG@10
    valid: Cell  # validation NDCG@10


def load_row(runs_dir: Path, row: TableRow) -> list[QualityRecord]:
    """The row's records, checked: one per seed, the same settings."""
    recs = [read_validated(runs_dir / f, QualityRecord, what="quality run record") for f in row.runs]
    seeds = [r.line.seed for r in recs]
    if len(set(seeds)) != len(seeds):
        raise SimGRError(f"{runs_dir}: row {row.label!r} counts a seed twice ({seeds})")
    first = recs[0].line.settings()
    for name, rec in zip(row.runs[1:], recs[1:], strict=True):
        other = rec.line.settings()
        # keys both lines print: quality.py has gained settings over time, printed at their old default
        for key in sorted(first.keys() & other.keys()):
            if first[key] != other[key]:
                raise SimGRError(f"{runs_dir}: row {row.label!r}: {row.runs[0]} and {name} differ in "
                                 f"{key} ({first[key]!r} against {other[key]!r})")
    return recs


def _range(values: list[float], fmt: str) -> str:
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}-{hi}"




def load_table(report_dir: Path) -> tuple[TableSpec, dict[str, Row]]:
    """reports/<name>/table.json and, per row label, its checked records and their aggregates."""
    spec = read_validated(report_dir / "table.json", TableSpec, what="quality table spec",
                          missing="missing: a quality report directory holds table.json and runs/")
    runs_dir = report_dir / "runs"
    listed = [f for row in spec.rows for f in row.runs]
    missing = [f for f in listed if not (runs_dir / f).is_file()]
    if missing:  # all of them at once: the table is never built short
        raise SimGRError(f"{runs_dir}: {len(missing)} run record(s) missing: {', '.join(missing)}")
    left_out = sorted({p.name for p in runs_dir.glob("*.json")} - set(listed))
    if left_out:  # a committed measurement is shown, kept or dropped, never quietly left out
        raise SimGRError(f"{report_dir}/table.json: {len(left_out)} run record(s) in no row: {', '.join(left_out)}")
    rows = {r.label: load_row(runs_dir, r) for r in spec.rows}
    return spec, {label: Row(recs, mean_std([r.line.ndcg10 for r in recs]), mean_std([r.line.valid_ndcg10 for r in recs]))
                  for label, recs in rows.items()}


def _epochs(lines: list[QualityLine]) -> str:
    """Epochs run (best epoch), and how many runs the budget ended while validation was still rising."""
    text = f"{_range([x.epochs for x in lines], 'd')} ({_range([x.best_epoch for x in lines], 'd')})"
    rising = sum(bool(x.still_improving) for x in lines)
    if rising:
        text += ", still rising" if rising == len(lines) else f", {rising} of {len(lines)} still rising"
    return text


def render_table(spec: TableSpec, rows: dict[str, Row]) -> str:
    """The markdown table: one line per row of table.json, in its order."""
    ref = rows[spec.reference].test
    out = ["| setting | seeds | test NDCG@10 (each seed) | valid NDCG@10 | epochs (best) | train samples/s "
           "| machines | test against the reference |", "|" + "---|" * 8]
    for label, (recs, test, valid) in rows.items():
        lines = [r.line for r in recs]
        each = f" ({', '.join(f'{x.ndcg10:.4f}' for x in lines)})" if len(lines) > 1 else ""
        out.append(" | ".join([
            f"| {label}", ", ".join(str(x.seed) for x in lines), f"{test.text()}{each}", valid.text(),
            _epochs(lines),
            _range([x.train_samples_per_s for x in lines], ",.0f"),
            "; ".join(dict.fromkeys(r.machine for r in recs)),
            "the reference" if label == spec.reference else against(test, ref)]) + " |")
    return "\n".join(out) + "\n"


def quality_table(report_dir: Path, *, readme: Path | None = None, check: bool = False) -> dict[str, Any]:
    """Build the table of reports/<name>; with ``readme``, rewrite its ``quality:NAME`` block, or with
    ``check`` only compare it (a SimGRError when the committed block is not what the run files give). The
    popularity split, where the records have it, goes to a ``quality:NAME:popularity`` block where the
    README holds one."""
    if check and readme is None:
        raise SimGRError("--check compares a README block: give --readme too")
    spec, rows = load_table(report_dir)
    table, split = render_table(spec, rows), render_popularity(spec, rows)
    changed = None
    if readme is not None:
        blocks = {f"quality:{spec.name}": table}
        if split is not None and has_block(readme, f"quality:{spec.name}:popularity"):
            blocks[f"quality:{spec.name}:popularity"] = split
        stale = [tag for tag, text in blocks.items() if read_block(readme, tag) != text]
        changed = bool(stale)
        if check and stale:
            raise SimGRError(f"{readme}: the '{stale[0]}' block is not the table {report_dir} gives; "
                             f"rewrite it with `simgr quality-table --report {report_dir} --readme {readme}`")
        for tag in stale:
            replace_block(readme, tag, blocks[tag])
    return {"report": str(report_dir), "name": spec.name, "readme": None if readme is None else str(readme),
            "changed": changed, "table": table, "popularity": split,
            "rows": [{"label": label, "seeds": t.n, "test_ndcg@10": round(t.mean, 4),
                      "test_std": None if t.n < 2 else round(t.std, 4), "valid_ndcg@10": round(v.mean, 4)}
                     for label, (_, t, v) in rows.items()]}


def this_machine() -> str:
    """`<n>-core <CPU model>, <vector ISA>` and which bf16 units it has, or that it has none: what a quality
    number depends on besides the seed (e.g. "2-core AMD EPYC, AVX2, no bf16 units")."""
    import torch  # only when a run is recorded

    from model.training.precision import cpu_bf16_units

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    names = [t.split(":", 1)[1].strip() for t in info.splitlines() if t.startswith("model name")]
    model = names[0] if names else platform.processor() or platform.machine()
    units = cpu_bf16_units()
    isa = torch.backends.cpu.get_cpu_capability()  # the kernels torch dispatches to: DEFAULT, AVX2, AVX512, ...
    return f"{os.cpu_count()}-core {model}, {isa}, " + (f"with {' and '.join(units)}" if units else "no bf16 units")


def current_commit() -> str:
    """This checkout's commit, `-dirty` with uncommitted changes to tracked files; "" outside git."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], capture_output=True, text=True,
                             check=True, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.stdout.strip()


def write_record(path: Path, line: dict[str, Any], argv: list[str] | None = None, *,
                 commit: str | None = None) -> QualityRecord:
    """Record the JSON line ``line`` of the command ``argv`` (default: this process's) run on this machine,
    at ``commit`` (default: the checkout's now; a run passes the one it started at)."""
    env = " ".join(f"{k}={os.environ[k]}" for k in ("LD_PRELOAD", "OMP_NUM_THREADS") if k in os.environ)
    command = shlex.join(["python", *(sys.argv if argv is None else argv)])
    record = {"schema_version": 1, "command": f"{env} {command}".strip(), "machine": this_machine(),
              "date": datetime.now(UTC).strftime("%Y-%m-%d"),
              "commit": current_commit() if commit is None else commit, "line": line}
    parsed = QualityRecord.model_validate(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1) + "\n")
    return parsed
