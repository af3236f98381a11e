"""The Table 3 sections of report.md, built from per-run result files only (model/analysis/runfiles.py).

Main view: converged runs, mean ± std over seeds, with the paper's number, the compute each cell took and
whether the paper's claim (SimGR ahead of the baseline) held at two standard deviations. Second view:
the equal wall-clock table, labelled as such. Then SimGR-vs-each-baseline claims, and the SASRec grid.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from model.analysis.config import CompareConfig
from model.analysis.report import PAPER_TABLE3
from model.analysis.runfiles import METRICS, Cell, RunKey, RunResult, TrainInfo, mean_std, verdict

PAPER_NDCG10 = {m: v[METRICS.index("ndcg@10")] for m, v in PAPER_TABLE3.items()}  # Instruments
_HELD = {"a>b": "held: SimGR ahead by > 2 std", "tie": "not shown: gap within 2 std",
         "b>a": "did not hold: baseline ahead by > 2 std", "no-variance": "no claim: a single seed"}


def group(runs: Mapping[RunKey, RunResult], view: str) -> dict[str, dict[str, list[RunResult]]]:
    """dataset -> method -> the runs of one view (grid runs excluded), in config order."""
    out: dict[str, dict[str, list[RunResult]]] = defaultdict(lambda: defaultdict(list))
    for k, r in runs.items():
        if k.view == view:
            out[k.dataset][k.method].append(r)
    return out


def cell(rs: list[RunResult], metric: str) -> Cell:
    return mean_std([r.metrics[metric] for r in rs])


def _row(method: str, rs: list[RunResult], simgr: list[RunResult] | None, paper: bool) -> list[str]:
    t = [r.train for r in rs]
    row = [method, str(len(rs)), *[cell(rs, m).text() for m in METRICS],
           f"{mean_std([float(x.epochs) for x in t]).mean:.1f}", f"{mean_std([x.minutes for x in t]).mean:.2f}",
           ", ".join(sorted({_stopped_by(x) for x in t})), f"{mean_std([r.rank_seconds for r in rs]).mean:.1f}"]
    if paper:
        claim = "-" if method == "simgr" or simgr is None else _HELD[verdict(cell(simgr, "ndcg@10"),
                                                                             cell(rs, "ndcg@10"))]
        row += [f"{PAPER_NDCG10[method]:.4f}" if method in PAPER_NDCG10 else "-", claim]
    return row


def _stopped_by(t: TrainInfo) -> str:
    return "budget" if t.out_of_time else "epoch cap" if t.hit_epoch_cap else "early stop"


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def view_tables(runs: Mapping[RunKey, RunResult], view: str, *, main_dataset: str) -> str:
    text = ""
    for ds, methods in group(runs, view).items():
        paper = ds == main_dataset and ds.lower().startswith("instrument")
        simgr = methods.get("simgr")
        rows = [_row(m, rs, simgr, paper) for m, rs in methods.items()]
        users = next(iter(methods.values()))[0].users
        header = ["method", "seeds", *METRICS, "epochs", "train min", "stopped by", "rank s"]
        header += ["paper NDCG@10", "paper's claim (SimGR ahead)"] if paper else []
        text += f"\n**{ds}** ({users} test users)\n\n" + _md(header, rows) + claims(methods)
    return text


def claims(methods: Mapping[str, list[RunResult]]) -> str:
    """SimGR against each other method on NDCG@10 and HR@10, claimed only beyond two std."""
    simgr = methods.get("simgr")
    if not simgr:
        return ""
    lines = []
    for m, rs in methods.items():
        if m == "simgr":
            continue
        for metric in ("ndcg@10", "hr@10"):
            a, b = cell(simgr, metric), cell(rs, metric)
            v = verdict(a, b)
            said = {"a>b": f"SimGR beats {m}", "b>a": f"{m} beats SimGR", "tie": "no difference claimed",
                    "no-variance": "no claim (a single seed)"}[v]
            lines.append(f"- {metric}, SimGR {a.text()} vs {m} {b.text()}: {said}")
    return "\n" + "\n".join(lines) + "\n"


def grid_table(runs: Mapping[RunKey, RunResult]) -> str:
    text = ""
    by_ds: dict[str, list[RunResult]] = defaultdict(list)
    for k, r in runs.items():
        if k.view == "grid":
            by_ds[k.dataset].append(r)
    for ds, rs in by_ds.items():
        best = max(rs, key=lambda r: r.train.best_valid_ndcg10)
        rows = [[str(int(r.hyper["dim"])), f"{r.hyper['dropout']:g}", f"{r.hyper['lr']:g}",
                 f"{r.train.best_valid_ndcg10:.4f}", str(r.train.epochs), "selected" if r is best else ""]
                for r in rs]
        text += f"\n**{ds}**\n\n" + _md(["dim", "dropout", "lr", "valid NDCG@10", "epochs", ""], rows)
    return text


def table3_sections(cfg: CompareConfig, runs: Mapping[RunKey, RunResult], *, main_dataset: str) -> str:
    gen = cfg.generative_seeds or cfg.seeds
    text = ("\n## Table 3 analogue: overall performance, trained to convergence\n\n"
            f"Every model trains until validation NDCG@10 has not improved for {cfg.patience} epochs "
            f"({cfg.sasrec_patience} for SASRec, RecBole's stopping_step; epoch cap {cfg.epoch_cap}; 'stopped by' "
            f"says what ended each run). Mean ± sample std over {cfg.seeds} "
            f"seed(s) ({gen} for autoregressive/Latte). Full ranking over all items; beam {cfg.table_beam} for "
            "autoregressive and Latte. 'epochs' and 'train min' are means over seeds (training + validation, "
            f"{cfg.threads} CPU thread(s)). A method is said to beat another only where the gap exceeds two "
            "standard deviations of the difference (sqrt(std_a² + std_b²)).\n"
            + "".join(f"\nTuned on validation, like SASRec's grid point: {m} trains with "
                      f"{', '.join(f'{k} {v:g}' for k, v in cfg.hyper_for(m).items())}.\n" for m in cfg.tuned)
            + view_tables(runs, "converged", main_dataset=main_dataset))
    if any(k.view == "grid" for k in runs):
        text += ("\n### SASRec grid (seed 0, converged, selected on validation NDCG@10)\n"
                 + grid_table(runs))
    if cfg.budget_view:
        text += (f"\n## Table 3, second view: equal wall-clock budget ({cfg.time_budget_min} min per model)\n\n"
                 f"The same models, each stopped by a {cfg.time_budget_min}-minute training budget instead of "
                 f"convergence ({cfg.budget_seeds} seed(s)). This view measures quality per unit of compute, not "
                 "what each method can reach.\n"
                 + view_tables(runs, "budget", main_dataset=main_dataset))
    return text


def summary_table(runs: Mapping[RunKey, RunResult]) -> str:
    """The README's results table: test NDCG@10 (mean ± std, converged view) per dataset and method."""
    grouped = group(runs, "converged")
    methods = list(dict.fromkeys(m for ms in grouped.values() for m in ms))
    rows = [[ds, *[cell(ms[m], "ndcg@10").text() if m in ms else "-" for m in methods]]
            for ds, ms in grouped.items()]
    rows.append(["paper (Instruments, Qwen3-4B)", *[f"{PAPER_NDCG10[m]:.4f}" if m in PAPER_NDCG10 else "-"
                                                   for m in methods]])
    return _md(["NDCG@10, converged", *methods], rows)
