"""``simgr compare`` and ``simgr quality-table``: their flags and the calls into model/analysis/.
``service/cli/main.py`` registers them with its result printer: ``add_parser(sub, emit=_emit)``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run(a: argparse.Namespace, emit: Callable[[dict[str, Any]], None]) -> int:
    from model.analysis.compare import run_compare

    only = tuple(m for m in (a.only or "").split(",") if m)
    analyses = tuple(m for m in (a.analysis or "").split(",") if m)
    emit(run_compare(a.config, seeds=a.seeds, only=only, analyses=analyses, report_only=a.report_only,
                     readme=a.readme))
    return 0


def add_parser(sub: Any, *, emit: Callable[[dict[str, Any]], None]) -> None:
    s = sub.add_parser("compare", help="train/evaluate the baselines and write the paper-analysis report")
    s.add_argument("--config", required=True, type=Path, help="CompareConfig JSON (see model/analysis/config.py)")
    s.add_argument("--seeds", type=int, help="training seeds per Table 3 cell (overrides the config's `seeds`)")
    s.add_argument("--only", help="comma-separated methods: train only their missing run files, no report")
    s.add_argument("--analysis", help="comma-separated analyses besides Table 3 (latte_beams, table1, table4, "
                   "figure4, figure3): compute only their missing entry files, no report")
    s.add_argument("--report-only", action="store_true", help="rebuild the report from the committed run "
                   "and entry files; train nothing")
    s.add_argument("--readme", type=Path, help="also rewrite this file's <!-- compare:NAME:start/end --> block "
                   "with the Table 3 summary")
    s.set_defaults(func=lambda a: run(a, emit))


def run_quality_table(a: argparse.Namespace, emit: Callable[[dict[str, Any]], None]) -> int:
    from model.analysis.quality_runs import quality_table

    emit(quality_table(a.report, readme=a.readme, check=a.check))
    return 0


def add_quality_parser(sub: Any, *, emit: Callable[[dict[str, Any]], None]) -> None:
    s = sub.add_parser("quality-table", help="the table of committed benchmarks/quality.py run records "
                       "(reports/NAME/table.json and runs/)")
    s.add_argument("--report", required=True, type=Path, help="the report directory, e.g. reports/instruments_30min")
    s.add_argument("--readme", type=Path, help="also rewrite this file's <!-- quality:NAME:start/end --> block")
    s.add_argument("--check", action="store_true", help="with --readme: change nothing, and exit 2 when the "
                   "block is not the table the run records give")
    s.set_defaults(func=lambda a: run_quality_table(a, emit))
