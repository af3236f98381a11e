"""Per-run result files: known-answer mean/std aggregation, the two-std claim rule, the strict schema, and
a report builder that names every missing run file instead of building a shorter table."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from model.analysis.runfiles import Cell, RunKey, RunResult, TrainInfo, load_runs, mean_std, save_run, verdict
from model.errors import SimGRError


def _result(seed: int, ndcg: float, *, method: str = "simgr") -> RunResult:
    train = TrainInfo(epochs=7, best_epoch=4, best_valid_ndcg10=0.05, minutes=1.5, out_of_time=False,
                      hit_epoch_cap=False, patience=3, epoch_cap=100, targets=1000)
    metrics = {"hr@1": 0.01, "hr@5": 0.05, "hr@10": 0.1, "ndcg@5": 0.04, "ndcg@10": ndcg}
    return RunResult(dataset="Inst", method=method, view="converged", seed=seed, preset="small", hyper={},
                     metrics=metrics, users=100, beam=0, rank_seconds=0.5, threads=1, train=train)


def test_mean_and_sample_std_known_answers() -> None:
    c = mean_std([0.1, 0.2, 0.3])
    assert c.n == 3
    assert c.mean == pytest.approx(0.2)
    assert c.std == pytest.approx(0.1)  # sample std (ddof 1), not the population 0.0816
    c = mean_std([1.0, 2.0, 3.0, 4.0])
    assert c.mean == pytest.approx(2.5)
    assert c.std == pytest.approx(math.sqrt(5 / 3))
    one = mean_std([0.07])
    assert one.mean == pytest.approx(0.07)
    assert math.isnan(one.std)
    assert one.text() == "0.0700"
    assert mean_std([0.1, 0.2, 0.3]).text() == "0.2000 ± 0.1000"
    with pytest.raises(ValueError, match="no values"):
        mean_std([])


def test_claims_only_beyond_two_std_of_the_difference() -> None:
    a = Cell(0.080, 0.001, 3)
    assert verdict(a, Cell(0.077, 0.001, 3)) == "a>b"  # gap 0.003 > 2 * sqrt(2) * 0.001 = 0.00283
    assert verdict(a, Cell(0.078, 0.001, 3)) == "tie"  # gap 0.002 < 0.00283
    assert verdict(Cell(0.070, 0.001, 3), a) == "b>a"
    assert verdict(a, Cell(0.010, 0.0, 1)) == "no-variance"  # one seed: no claim however large the gap


def test_run_files_round_trip_and_reject_bad_content(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    results = [_result(k, 0.07 + 0.001 * k) for k in range(3)]
    for r in results:
        save_run(runs, r)
    keys = [RunKey("Inst", "simgr", "converged", k) for k in range(3)]
    assert sorted(p.name for p in runs.iterdir()) == [k.filename for k in keys]
    loaded = load_runs(runs, keys)
    assert [loaded[k] for k in keys] == results
    with pytest.raises(ValidationError, match="extra"):
        RunResult.model_validate({**results[0].model_dump(), "surprise": 1})
    with pytest.raises(ValidationError, match="exactly the keys"):
        RunResult.model_validate({**results[0].model_dump(), "metrics": {"ndcg@10": 0.1}})
    (runs / keys[1].filename).write_text('{"dataset": "Inst"}')
    with pytest.raises(SimGRError, match=keys[1].filename):
        load_runs(runs, keys)


def test_report_builder_fails_loudly_on_missing_run_files(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    save_run(runs, _result(0, 0.07))
    keys = [RunKey("Inst", "simgr", "converged", k) for k in range(3)]
    with pytest.raises(SimGRError, match="2 run file") as err:
        load_runs(runs, keys)
    assert keys[1].filename in str(err.value)
    assert keys[2].filename in str(err.value)
