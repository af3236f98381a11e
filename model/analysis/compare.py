"""`simgr compare`: Table 3 from per-run result files and the other analyses from per-quantity entry files
(each computed here unless it exists), and the report.

    simgr compare --config C.json [--seeds N]          # train what is missing, then write the report
    simgr compare --config C.json --only simgr,sasrec  # one sitting's share of the runs; no report
    simgr compare --config C.json --analysis table1    # one sitting's (or process's) share of the analyses
    simgr compare --config C.json --report-only        # the report from the committed files, no training
    simgr compare --config C.json --readme README.md   # also rewrite the README's marked results table
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from model.analysis.config import CompareConfig, compare_config_json, load_compare_config
from model.analysis.readme import replace_block
from model.analysis.report import require_matplotlib, write_report
from model.analysis.report_table3 import summary_table, table3_sections
from model.analysis.runfiles import load_runs
from model.analysis.runner import Context, evaluate
from model.analysis.table1 import table1
from model.analysis.table3 import check_protocol, expected_keys, produce_all
from model.errors import SimGRError


def other_analyses(cfg: CompareConfig) -> tuple[str, ...]:
    """The analyses besides Table 3 that this config produces, in report order (`--analysis` names)."""
    names = ("latte_beams",) if "table3" in cfg.analyses and "latte" in cfg.methods else ()
    return names + tuple(a for a in ("table1", "table4", "figure4", "figure3") if a in cfg.analyses)


def _other_analyses(ctx: Context, names: tuple[str, ...]) -> dict[str, Any]:
    """Each named analysis from its committed entry files, computing (and saving) the missing ones."""
    cfg, main = ctx.cfg, ctx.cfg.datasets[0]
    produce = {
        "latte_beams": lambda: {str(b): evaluate(ctx, main, "latte", beam=b) for b in cfg.latte_beams},
        "table1": lambda: table1(ctx, main),
        "table4": lambda: {a: evaluate(ctx, main, "simgr", aggregator=a) for a in cfg.aggregators},
        "figure4": lambda: {ctx.name(d): {m: evaluate(ctx, d, m) for m in ("autoregressive", "parallel", "simgr")}
                            for d in cfg.datasets},
        "figure3": lambda: {p: {m: evaluate(ctx, main, m, preset=p) for m in ("autoregressive", "simgr")}
                            for p in cfg.presets},
    }
    return {name: produce[name]() for name in names}


def _check_flags(cfg: CompareConfig, only: tuple[str, ...], analyses: tuple[str, ...], report_only: bool) -> None:
    unknown = set(only) - set(cfg.methods)
    if unknown:
        raise SimGRError(f"--only: {', '.join(sorted(unknown))} not among the config's methods")
    unknown = set(analyses) - set(other_analyses(cfg))
    if unknown:
        raise SimGRError(f"--analysis: {', '.join(sorted(unknown))} not among the config's analyses "
                         f"({', '.join(other_analyses(cfg))})")
    if report_only and (only or analyses):
        raise SimGRError("--report-only trains nothing: it cannot be combined with --only or --analysis")


def run_compare(config_path: str | Path, *, seeds: int | None = None, only: tuple[str, ...] = (),
                analyses: tuple[str, ...] = (), report_only: bool = False,
                readme: Path | None = None) -> dict[str, Any]:
    if not only and not analyses:  # the report's figures: fail before hours of training, not after
        require_matplotlib()
    cfg = load_compare_config(config_path)
    if seeds is not None:
        if seeds < 1:
            raise SimGRError(f"--seeds must be at least 1, got {seeds}")
        cfg = dataclasses.replace(cfg, seeds=seeds)
    _check_flags(cfg, only, analyses, report_only)
    torch.set_num_threads(max(1, cfg.threads))
    ctx = Context(cfg, compute=not report_only)
    if only or analyses:  # a partial sitting: its run and entry files; the report needs all of them
        trained = produce_all(ctx, only) if only and "table3" in cfg.analyses else 0
        _other_analyses(ctx, analyses)
        return {"runs": trained, "analyses": list(analyses), "runs_dir": str(cfg.report_dir / "runs"),
                "entries_dir": str(ctx.results.root), "report": None}
    if "table3" in cfg.analyses and not report_only:
        produce_all(ctx)
    table3 = ""
    if "table3" in cfg.analyses:
        runs = load_runs(cfg.report_dir / "runs", expected_keys(ctx))
        check_protocol(cfg, runs)
        table3 = table3_sections(cfg, runs, main_dataset=ctx.name(cfg.datasets[0]))
        if readme is not None:
            replace_block(readme, f"compare:{cfg.name}", summary_table(runs))
    out = _other_analyses(ctx, other_analyses(cfg))
    cfg.report_dir.mkdir(parents=True, exist_ok=True)
    (cfg.report_dir / "compare_config.json").write_text(compare_config_json(cfg))
    flags = (f" --seeds {seeds}" if seeds else "") + (" --report-only" if report_only else "")
    report = write_report(cfg, out, command=f"simgr compare --config {config_path}{flags}", table3=table3)
    return {"report": str(report), "analyses": list(out), "cache": str(cfg.cache_dir),
            "runs_dir": str(cfg.report_dir / "runs"), "entries_dir": str(ctx.results.root)}
