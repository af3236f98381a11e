"""Per-run result files of `simgr compare` (reports/<name>/runs/*.json) and their aggregation.

One file per trained-and-evaluated model: (dataset, method, view, seed[, grid tag]). Reports are assembled
from these files only, so a report can be built over several sittings and regenerated anywhere; a file
the report needs but cannot find is an error naming it, never a silently shorter table.

Aggregation: mean and SAMPLE standard deviation (ddof = 1) over seeds. A claim "A beats B" is made only
where mean_A - mean_B > 2 * sqrt(std_A^2 + std_B^2), the standard deviation of the difference of two
independent runs; with a single seed there is no variance and no claim.

    mean_std([0.1, 0.2, 0.3]) -> Cell(mean=0.2, std=0.1, n=3)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from model.data.jsonio import write_atomic
from model.errors import SimGRError

METRICS = ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10")
View = Literal["converged", "budget", "grid"]


class TrainInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: int  # epochs run (the last one may be partial under a budget)
    best_epoch: int  # epoch of the kept (best validation) checkpoint
    best_valid_ndcg10: float  # validation NDCG@10 of that checkpoint (the early-stopping criterion)
    minutes: float  # wall-clock training + validation time
    out_of_time: bool  # the wall-clock budget ended training
    hit_epoch_cap: bool  # the epoch cap ended training (a converged run must not)
    patience: int  # epochs without validation gain before stopping
    epoch_cap: int
    targets: int  # training targets per epoch
    valid_users: int = 0  # validated on a fixed sample of this many users (0 = every validation user)


class RunResult(BaseModel):
    """One trained model's test metrics and what it cost."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    dataset: str
    method: str
    view: View  # converged: early stopping on validation; budget: equal wall clock; grid: SASRec tuning
    seed: int  # seed index k (training seed = 42 + config seed + k)
    tag: str = ""  # grid point, e.g. "d128-p0.2-lr0.001"
    preset: str
    hyper: dict[str, float]  # method settings that differ across runs (SASRec grid: dim, dropout, lr)
    metrics: dict[str, float]  # exactly METRICS, on the test split
    users: int  # test users evaluated
    beam: int  # beam of the generative methods, 0 for full ranking
    rank_seconds: float
    threads: int
    train: TrainInfo

    @field_validator("metrics")
    @classmethod
    def _all_metrics(cls, v: dict[str, float]) -> dict[str, float]:
        if set(v) != set(METRICS):
            raise ValueError(f"metrics must have exactly the keys {', '.join(METRICS)}")
        return v


class RunKey(NamedTuple):
    dataset: str
    method: str
    view: str
    seed: int
    tag: str = ""

    @property
    def filename(self) -> str:
        tag = f"-{self.tag}" if self.tag else ""
        return f"{self.dataset}-{self.method}-{self.view}{tag}-s{self.seed}.json"


def run_key(r: RunResult) -> RunKey:
    return RunKey(r.dataset, r.method, r.view, r.seed, r.tag)


def save_run(runs_dir: Path, result: RunResult) -> Path:
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = runs_dir / run_key(result).filename
    write_atomic(path, json.dumps(result.model_dump(), indent=1, sort_keys=True) + "\n")
    return path


def read_run(path: Path) -> RunResult:
    try:
        return RunResult.model_validate_json(path.read_text())
    except (OSError, ValidationError) as e:
        raise SimGRError(f"{path}: not a valid run result file ({str(e).splitlines()[0]})") from None


def load_runs(runs_dir: Path, keys: Iterable[RunKey]) -> dict[RunKey, RunResult]:
    """Every expected run file; SimGRError naming ALL missing ones (the report is never built short)."""
    keys = list(keys)
    missing = [k.filename for k in keys if not (runs_dir / k.filename).is_file()]
    if missing:
        raise SimGRError(f"{runs_dir}: {len(missing)} run file(s) missing: {', '.join(missing)}; "
                         "train them with `simgr compare` (without --report-only)")
    out = {k: read_run(runs_dir / k.filename) for k in keys}
    for k, r in out.items():
        if run_key(r) != k:
            raise SimGRError(f"{runs_dir / k.filename}: holds the run {run_key(r).filename}")
    return out


class Cell(NamedTuple):
    mean: float
    std: float  # sample std (ddof 1); nan for one value
    n: int

    def text(self, nd: int = 4) -> str:
        return f"{self.mean:.{nd}f}" if self.n < 2 else f"{self.mean:.{nd}f} ± {self.std:.{nd}f}"


def mean_std(values: Sequence[float]) -> Cell:
    if not values:
        raise ValueError("no values to aggregate")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return Cell(mean, std, n)


def diff_std(a: Cell, b: Cell) -> float:
    """The standard deviation of mean_a - mean_b for two independent sets of runs."""
    return math.sqrt(a.std ** 2 + b.std ** 2)


def verdict(a: Cell, b: Cell) -> str:
    """'a>b', 'b>a', 'tie' (gap within 2 std of the difference) or 'no-variance' (a single seed)."""
    if a.n < 2 or b.n < 2:
        return "no-variance"
    sd = diff_std(a, b)
    gap = a.mean - b.mean
    if gap > 2 * sd:
        return "a>b"
    if -gap > 2 * sd:
        return "b>a"
    return "tie"


def against(a: Cell, ref: Cell) -> str:
    """Row a's cell (e.g. test NDCG@10) against the reference row's, by the two-standard-deviation rule."""
    gap, outcome = a.mean - ref.mean, verdict(a, ref)
    if outcome == "no-variance":
        return f"{gap:+.4f}, no claim: one seed"
    word = {"a>b": "ahead", "b>a": "behind", "tie": "within 2 std"}[outcome]
    return f"{gap:+.4f}, {word} (2 std = {2 * diff_std(a, ref):.4f})"
