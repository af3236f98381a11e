"""report.md + PNG plots from the numbers `simgr compare` measured (model/analysis/runner.py).

Every number in the report comes from the committed run and entry files (collected in results.json); the
paper's anchors (arXiv 2602.07847, Tables 1/3 on Instruments) are quoted next to them for comparison.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from model.analysis.config import CompareConfig, compare_config_json
from model.errors import SimGRError

PAPER_TABLE3 = {  # Instruments, the paper's Table 3: HR@1, HR@5, HR@10, NDCG@5, NDCG@10
    "sasrec": (0.0209, 0.0808, 0.1065, 0.0526, 0.0609),
    "autoregressive": (0.0601, 0.0844, 0.1029, 0.0726, 0.0784),  # LC-Rec, Qwen3-4B, beam 20
    "parallel": (0.0562, 0.0756, 0.0902, 0.0619, 0.0666),  # RPG
    "simgr": (0.0641, 0.0953, 0.1156, 0.0802, 0.0868),
}
PAPER_TABLE1 = "beam 10: 8,570 s, NDCG@10 0.0754; beam 20: 10,760 s, 0.0784; beam 100: 25,560 s, 0.0808 (all users, RTX 5090)"
METRICS = ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10")


def _f(x: Any, nd: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x + 0.0:.{nd}f}" if isinstance(x, float) else str(x)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _latte_beams(out: dict[str, Any]) -> str:
    rows = [[b, *[v[k] for k in METRICS], v["seconds"]] for b, v in out["latte_beams"].items()]
    return ("\nLatte on the main dataset by beam size, seed 0 converged (the paper's best is beam 500):\n\n"
            + _table(["beam", *METRICS, "rank s"], rows))


def _table1(t1: dict[str, Any]) -> str:
    rows = [[b, v["ndcg@10"], v["hr@10"], v["ndcg@10_exact_subset"], v["top5_overlap_exact"],
             v["theorem41_fraction"], v["seconds"], 1000 * v["seconds"] / max(1, v["users"])]
            for b, v in t1["beams"].items()]
    ex, sg = t1["exact"], t1["simgr"]
    rows.append(["exact", None, None, ex["ndcg@10"], 1.0, 1.0, ex["seconds"], 1000 * ex["seconds"] / ex["users"]])
    rows.append(["SimGR (1 forward)", sg["ndcg@10"], sg["hr@10"], sg["ndcg@10_exact_subset"], None, None,
                 sg["seconds"], 1000 * sg["seconds"] / sg["users"]])
    users = next(iter(t1["beams"].values()))["users"]
    return (f"\nBeam rows and SimGR: {users} test users; exact global search and the top-5 overlap: "
            f"the first {ex['users']} of them. Theorem 4.1 fraction = share of targets whose every SID token "
            "ranks within the top B allowed tokens at its step (teacher forcing).\n\n"
            + _table(["beam", "NDCG@10", "HR@10", "NDCG@10 (exact-search users)", "top-5 overlap w/ exact",
                      "Thm 4.1 fraction", "seconds", "ms/user"], rows)
            + f"\nPaper (Table 1, LC-Rec on Instruments): {PAPER_TABLE1}.\n")


def _diversity(out: dict[str, Any], ks: tuple[int, ...]) -> str:
    text = ""
    for ds, methods in out["figure4"].items():
        rows = [[m, *[v.get(f"entropy@{k}") for k in ks], *[v.get(f"coverage@{k}") for k in ks]]
                for m, v in methods.items()]
        text += f"\n**{ds}: items**\n\n" + _table(
            ["method", *[f"Entropy@{k}" for k in ks], *[f"Coverage@{k}" for k in ks]], rows)
        if any(f"entropy_category@{ks[0]}" in v for v in methods.values()):
            rows = [[m, *[v.get(f"entropy_category@{k}") for k in ks]] for m, v in methods.items()]
            text += f"\n**{ds}: categories** (an item's last category)\n\n" + _table(
                ["method", *[f"Entropy@{k}" for k in ks]], rows)
    return text


def require_matplotlib() -> None:
    """The figures need matplotlib, which only the ``report`` extra installs: say so in one line."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise SimGRError("simgr compare draws its figures with matplotlib: pip install 'simgr[report]'") from None


def _plots(cfg: CompareConfig, out: dict[str, Any]) -> list[str]:
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    if "table1" in out:
        t1 = out["table1"]
        beams = [int(b) for b in t1["beams"]]
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        ax[0].plot(beams, [t1["beams"][str(b)]["ndcg@10"] for b in beams], "o-", label="AR beam search")
        ax[0].axhline(t1["simgr"]["ndcg@10"], color="C1", ls="--", label="SimGR")
        ax[0].set(xlabel="beam size", ylabel="NDCG@10", title="Quality vs beam")
        ax[1].plot(beams, [1000 * t1["beams"][str(b)]["seconds"] / t1["beams"][str(b)]["users"] for b in beams],
                   "o-", label="AR beam search")
        ax[1].axhline(1000 * t1["simgr"]["seconds"] / t1["simgr"]["users"], color="C1", ls="--", label="SimGR")
        ax[1].set(xlabel="beam size", ylabel="ms / user", yscale="log", title="Inference cost")
        ax[0].legend()
        fig.tight_layout()
        fig.savefig(cfg.report_dir / "table1_beam.png", dpi=110)
        made.append("table1_beam.png")
    if "figure4" in out:
        ks = cfg.entropy_ks
        groups = [(ds, "entropy") for ds in out["figure4"]] + [
            (ds, "entropy_category") for ds, m in out["figure4"].items()
            if any(f"entropy_category@{ks[0]}" in v for v in m.values())]
        fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.5), squeeze=False)
        for ax, (ds, kind) in zip(axes[0], groups, strict=True):
            for m, v in out["figure4"][ds].items():
                ax.plot(ks, [v.get(f"{kind}@{k}") for k in ks], "o-", label=m)
            ax.set(xlabel="K", ylabel=f"Entropy@K ({'categories' if 'category' in kind else 'items'})", title=ds)
        axes[0][0].legend()
        fig.tight_layout()
        fig.savefig(cfg.report_dir / "figure4_entropy.png", dpi=110)
        made.append("figure4_entropy.png")
    if "figure3" in out:
        presets = list(out["figure3"])
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        for m in ("simgr", "autoregressive"):
            ax.plot(presets, [out["figure3"][p][m]["ndcg@10"] for p in presets], "o-", label=m)
        ax.set(xlabel="backbone preset", ylabel="NDCG@10", title="Scaling the backbone")
        ax.legend()
        fig.tight_layout()
        fig.savefig(cfg.report_dir / "figure3_presets.png", dpi=110)
        made.append("figure3_presets.png")
    plt.close("all")
    return made


def write_report(cfg: CompareConfig, out: dict[str, Any], *, command: str, table3: str = "") -> Path:
    """reports/<name>/report.md (+ PNGs + results.json); ``table3``: the Table 3 sections, already built
    from the run files (model/analysis/report_table3.py). Returns the report path."""
    d = cfg.report_dir
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.json").write_text(json.dumps(out, indent=1) + "\n")  # insertion order = table order
    plots = _plots(cfg, out)
    parts = [f"# Baselines and analyses: {cfg.name}\n",
             f"Produced by `{command}` (config below; Table 3 from the run files in `{d / 'runs'}`, the other "
             f"analyses from the entry files in `{d / 'analyses'}`, all of them together in "
             f"`{d / 'results.json'}`; trained models cached under `{cfg.cache_dir}`). "
             f"Backbone preset `{cfg.preset}`, prompt layout `{cfg.layout}`, {cfg.threads} CPU thread(s). "
             f"Metrics on {f'a fixed random sample of {cfg.eval_users} test users' if cfg.eval_users else 'every test user'}"
             ", full ranking over all items (beam search for the autoregressive methods). Table 1, "
             "4 and Figures 3-4 use the seed-0 converged models.\n"]
    notes = d / "notes.md"
    if notes.is_file():
        parts.append(notes.read_text())
    if table3:
        parts.append(table3)
    if out.get("latte_beams"):
        parts.append(_latte_beams(out))
    if "table1" in out:
        parts.append("\n## Table 1 analogue: beam size vs exact search (autoregressive)\n" + _table1(out["table1"]))
    if "table4" in out:
        rows = [[a, *[v[k] for k in METRICS]] for a, v in out["table4"].items()]
        parts.append("\n## Table 4 analogue: item-embedding aggregator (SimGR)\n\n"
                     + _table(["aggregator", *METRICS], rows))
    if "figure4" in out:
        parts.append("\n## Figure 4 analogue: diversity (Entropy@K, coverage)\n" + _diversity(out, cfg.entropy_ks))
    if "figure3" in out:
        rows = [[p, v["simgr"]["ndcg@10"], v["autoregressive"]["ndcg@10"]] for p, v in out["figure3"].items()]
        parts.append("\n## Figure 3 analogue: backbone size\n\n"
                     + _table(["preset", "SimGR NDCG@10", "autoregressive NDCG@10"], rows))
    if plots:
        parts.append("\n## Plots\n\n" + "\n".join(f"![{p}]({p})" for p in plots) + "\n")
    parts.append("\n## Config\n\n```json\n" + compare_config_json(cfg) + "```\n")
    path = d / "report.md"
    path.write_text("\n".join(parts))
    return path
