"""The configuration of `simgr compare`: which datasets, methods and budgets reproduce the paper's analyses.

Written as JSON (any subset of the fields; the rest keep their defaults) and copied next to the report.
A field the config does not have, or a value of the wrong type, is an error naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pydantic import with_config

from model.config import STRICT_FIELDS, to_dict
from model.data.jsonio import read_validated
from model.errors import SimGRError

ANALYSES = ("table3", "table1", "table4", "figure4", "figure3")


@with_config(STRICT_FIELDS)
@dataclasses.dataclass(frozen=True, kw_only=True)
class MethodSettings:
    """Training settings one method uses in place of the shared ones: a point chosen on validation, like
    SASRec's grid point. Each of its run files records them (``hyper``), and its cached models and analysis
    entries are kept apart from the untuned ones."""

    lr: float | None = None  # AdamW learning rate (None: the config's ``lr``)
    dropout: float | None = None  # attention dropout (None: TrainConfig's)
    input_dropout: float | None = None  # dropout on the input vectors (None: TrainConfig's)

    def hyper(self) -> dict[str, float]:
        """The settings given, as a run file's ``hyper`` (e.g. {"lr": 0.003})."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@with_config(STRICT_FIELDS)
@dataclasses.dataclass(frozen=True, kw_only=True)
class CompareConfig:
    name: str = "paper"  # report name: the report goes to out_dir, cached runs to work_dir/name
    out_dir: str = "reports/paper"  # report.md, PNG plots and the config used
    work_dir: str = "runs/compare"  # trained runs and evaluation caches (re-running never retrains)
    datasets: tuple[str, ...] = ("data/instruments", "data/scientific")  # prepared dirs; the FIRST is the main one
    analyses: tuple[str, ...] = ANALYSES  # which of Table 3/1/4 and Figure 4/3 to produce
    methods: tuple[str, ...] = ("sasrec", "autoregressive", "parallel", "latte", "simgr")  # Table 3 rows
    latte_main_only: bool = True  # Latte's latent-first beam (doubling until K distinct items) costs several
    # times AR's on a CPU: run it on the main (first) dataset only
    preset: str = "small"  # backbone preset shared by every LLM-based method
    layout: str = "items"  # prompt layout shared by every LLM-based method (SimGR's default)
    seeds: int = 1  # training seeds per Table 3 cell (mean ± std over them); `simgr compare --seeds N`
    generative_seeds: int = 0  # seeds for autoregressive/Latte (0 = `seeds`); they cost several times more
    patience: int = 3  # converged view: stop after this many epochs without validation NDCG@10 gain
    sasrec_patience: int = 10  # SASRec's: RecBole's stopping_step; its epochs are ~3x shorter and noisier
    epoch_cap: int = 100  # epoch cap of both views, so high that early stopping or the clock ends every run
    budget_view: bool = True  # also train the equal-wall-clock view (a labelled second Table 3)
    budget_seeds: int = 1  # seeds of the equal-wall-clock view
    time_budget_min: float = 1.5  # equal-wall-clock view: training budget per model (the same for all)
    lr: float = 1e-3  # AdamW learning rate for every method (the presets' default)
    tuned: dict[str, MethodSettings] = dataclasses.field(default_factory=dict)  # per method (not SASRec,
    # which its grid tunes): settings chosen on validation, e.g. {"simgr": {"lr": 0.003, "dropout": 0.3}}
    sasrec_dims: tuple[int, ...] = (64, 128)  # SASRec grid, selected on validation NDCG@10 (seed 0)
    sasrec_dropouts: tuple[float, ...] = (0.2, 0.5)  # 0.5 is RecBole's default
    sasrec_lrs: tuple[float, ...] = (1e-3, 3e-3)
    generative_max_users: int = 0  # AR/Latte train and validate on the first N users (0 = all): their
    # validation is a beam search over every validation user, once per epoch
    latte_valid_users: int = 0  # Latte validates on a fixed random sample of N validation users (0 = all;
    # model/training/train.py::valid_sample): its widening beam took 72-74 s per 1,000 users on one core,
    # about half an hour per epoch for Instruments' 24,772. Every other method validates on all of them.
    eval_users: int = 0  # fixed random sample of test users for every table (0 = every test user)
    exact_users: int = 500  # users (a prefix of the sample) for exact global search and Table 1's overlap
    beams: tuple[int, ...] = (10, 20, 30, 50, 100)  # Table 1 beam sizes
    table_beam: int = 20  # the autoregressive beam of Table 3 (LC-Rec's)
    latte_beams: tuple[int, ...] = (20, 50)  # Latte beams reported (the paper's best is 500)
    aggregators: tuple[str, ...] = ("mean", "concat", "proj", "attention", "gating")  # Table 4
    presets: tuple[str, ...] = ("tiny", "small")  # Figure 3 backbone sizes
    entropy_ks: tuple[int, ...] = (1, 5, 10, 20)  # Figure 4 cut-offs
    seed: int = 0  # user sample and training seed offset
    threads: int = 1  # torch threads: leave the other cores to the rest of the machine

    def patience_for(self, method: str) -> int:
        """Early-stopping patience of ``method``'s runs (both views)."""
        return self.sasrec_patience if method == "sasrec" else self.patience

    def hyper_for(self, method: str) -> dict[str, float]:
        """``method``'s tuned settings as a run file's ``hyper`` ({} when it has none)."""
        return self.tuned[method].hyper() if method in self.tuned else {}

    def valid_users_for(self, method: str) -> int:
        """Validation users of ``method``'s runs (0 = every validation user)."""
        return self.latte_valid_users if method == "latte" else 0

    @property
    def report_dir(self) -> Path:
        return Path(self.out_dir)

    @property
    def cache_dir(self) -> Path:
        return Path(self.work_dir) / self.name


def load_compare_config(path: str | Path) -> CompareConfig:
    path = Path(path)
    cfg = read_validated(path, CompareConfig, what="compare config", missing="compare config not found")
    bad = set(cfg.analyses) - set(ANALYSES)
    if bad or not cfg.datasets:
        raise SimGRError(f"{path}: analyses must be among {', '.join(ANALYSES)} and datasets non-empty")
    odd = sorted(set(cfg.tuned) - (set(cfg.methods) - {"sasrec"}))
    if odd:
        raise SimGRError(f"{path}: tuned: {', '.join(odd)} not among the methods it can tune "
                         "(the config's methods except sasrec, which its grid tunes)")
    return cfg


def compare_config_json(cfg: CompareConfig) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n"
