"""`simgr compare`: Table 3 from per-run result files (trained here unless they exist), the other analyses
from cached evaluations, and the report.

    simgr compare --config C.json [--seeds N]          # train what is missing, then write the report
    simgr compare --config C.json --only simgr,sasrec  # one sitting's share of the runs; no report
    simgr compare --config C.json --report-only        # the report from the committed files, no training
    simgr compare --config C.json --readme README.md   # also rewrite the README's marked results table
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from model.analysis.config import CompareConfig, compare_config_json, load_compare_config
from model.analysis.report import require_matplotlib, write_report
from model.analysis.report_table3 import summary_table, table3_sections
from model.analysis.runfiles import load_runs
from model.analysis.runner import Context, evaluate
from model.analysis.table1 import table1
from model.analysis.table3 import check_protocol, expected_keys, produce_all
from model.errors import SimGRError


def _other_analyses(ctx: Context) -> dict[str, Any]:
    cfg, main = ctx.cfg, ctx.cfg.datasets[0]
    out: dict[str, Any] = {}
    if "table3" in cfg.analyses and "latte" in cfg.methods:
        out["latte_beams"] = {str(b): evaluate(ctx, main, "latte", beam=b) for b in cfg.latte_beams}
    if "table1" in cfg.analyses:
        out["table1"] = table1(ctx, main)
    if "table4" in cfg.analyses:
        out["table4"] = {a: evaluate(ctx, main, "simgr", aggregator=a) for a in cfg.aggregators}
    if "figure4" in cfg.analyses:
        out["figure4"] = {ctx.name(d): {m: evaluate(ctx, d, m) for m in ("autoregressive", "parallel", "simgr")}
                          for d in cfg.datasets}
    if "figure3" in cfg.analyses:
        out["figure3"] = {p: {m: evaluate(ctx, main, m, preset=p) for m in ("autoregressive", "simgr")}
                          for p in cfg.presets}
    return out


def _committed_results(cfg: CompareConfig) -> dict[str, Any]:
    path = cfg.report_dir / "results.json"
    if not path.is_file():
        raise SimGRError(f"{path}: missing; --report-only rebuilds the report from committed files only")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def update_readme(path: Path, name: str, table: str) -> None:
    """Replace the block between ``<!-- compare:NAME:start -->`` and ``<!-- compare:NAME:end -->``."""
    start, end = f"<!-- compare:{name}:start -->", f"<!-- compare:{name}:end -->"
    try:
        text = path.read_text()
    except OSError as e:
        raise SimGRError(f"{path}: cannot read ({e.strerror})") from None
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise SimGRError(f"{path}: needs one '{start}' ... '{end}' block for the results table")
    head, rest = text.split(start)
    path.write_text(head + start + "\n" + table + end + rest.split(end, 1)[1])


def run_compare(config_path: str | Path, *, seeds: int | None = None, only: tuple[str, ...] = (),
                report_only: bool = False, readme: Path | None = None) -> dict[str, Any]:
    if not only:  # the report's figures: fail before hours of training, not after
        require_matplotlib()
    cfg = load_compare_config(config_path)
    if seeds is not None:
        if seeds < 1:
            raise SimGRError(f"--seeds must be at least 1, got {seeds}")
        cfg = dataclasses.replace(cfg, seeds=seeds)
    unknown = set(only) - set(cfg.methods)
    if unknown:
        raise SimGRError(f"--only: {', '.join(sorted(unknown))} not among the config's methods")
    torch.set_num_threads(max(1, cfg.threads))
    ctx = Context(cfg)
    trained = 0
    if "table3" in cfg.analyses and not report_only:
        trained = produce_all(ctx, only)
    if only:  # a partial sitting: the report needs every run file
        return {"runs": trained, "runs_dir": str(cfg.report_dir / "runs"), "report": None}
    table3 = ""
    if "table3" in cfg.analyses:
        runs = load_runs(cfg.report_dir / "runs", expected_keys(ctx))
        check_protocol(cfg, runs)
        table3 = table3_sections(cfg, runs, main_dataset=ctx.name(cfg.datasets[0]))
        if readme is not None:
            update_readme(readme, cfg.name, summary_table(runs))
    out = _committed_results(cfg) if report_only else _other_analyses(ctx)
    cfg.report_dir.mkdir(parents=True, exist_ok=True)
    (cfg.report_dir / "compare_config.json").write_text(compare_config_json(cfg))
    flags = (f" --seeds {seeds}" if seeds else "") + (" --report-only" if report_only else "")
    report = write_report(cfg, out, command=f"simgr compare --config {config_path}{flags}", table3=table3)
    return {"report": str(report), "analyses": list(out), "cache": str(cfg.cache_dir),
            "runs_dir": str(cfg.report_dir / "runs")}
