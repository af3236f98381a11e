"""The popularity split of a quality table: each row's test NDCG@10 on the head, torso and tail thirds of
the test users, split by their target's training count (``model/evaluation/metrics.py::ndcg_by_popularity``),
against the reference row's same third by the two-standard-deviation rule of the main table.

It asks where a lead comes from. A semantic ID shares its codes with similar items, so what the model
learns about popular items could reach rare ones, where an item-ID model such as SASRec learns each item's
vector from that item's own interactions; if so, SimGR's lead would sit in the tail third.
reports/quality section 8 measures it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from model.analysis.runfiles import Cell, against, mean_std

if TYPE_CHECKING:
    from model.analysis.quality_runs import QualityRecord, Row, TableSpec

THIRDS = ("head", "torso", "tail")  # most popular targets first, as ndcg_by_popularity orders them


def popularity_cells(records: list[QualityRecord]) -> list[Cell] | None:
    """Mean ± std over the records (seeds) of each third's NDCG@10; None if a record predates the split."""
    splits = [r.line.ndcg10_by_popularity for r in records]
    if any(s is None for s in splits):
        return None
    return [mean_std([s[i] for s in splits if s is not None]) for i in range(len(THIRDS))]


def render_popularity(spec: TableSpec, rows: Mapping[str, Row]) -> str | None:
    """The markdown table of the split, one line per row of table.json; None unless every record has it."""
    cells = {label: popularity_cells(row.records) for label, row in rows.items()}
    ref = cells[spec.reference]
    if ref is None or any(c is None for c in cells.values()):
        return None
    out = ["| setting | seeds | " + " | ".join(f"{t} third: test NDCG@10" for t in THIRDS) + " |",
           "|" + "---|" * (2 + len(THIRDS))]
    for label, row in rows.items():
        thirds = cells[label] or []
        texts = [c.text() if label == spec.reference else f"{c.text()} ({against(c, r)})"
                 for c, r in zip(thirds, ref, strict=True)]
        out.append(f"| {label} | {', '.join(str(r.line.seed) for r in row.records)} | " + " | ".join(texts) + " |")
    return "\n".join(out) + "\n"
