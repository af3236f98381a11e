"""Run-level steps that combine the pieces: export a trained run as a serving bundle."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from model.errors import SimGRError
from model.export import check_bundle, write_bundle
from model.run import load_run

log = logging.getLogger(__name__)


def export_run(run_dir: Path, out: Path, *, check_users: int = 256, seed: int = 0) -> dict[str, Any]:
    """Best checkpoint of ``run_dir`` -> bundle at ``out``; fails loudly if FAISS != exact top-10."""
    run = load_run(run_dir, checkpoint="best")
    if run.cfg.method != "simgr":
        raise SimGRError(f"{run_dir}: a {run.cfg.method!r} run; only SimGR runs export a serving bundle")
    if out.resolve() == run_dir.resolve():
        raise SimGRError(f"{out}: export into the run directory itself would overwrite it")
    metrics = {}
    for split in ("test", "valid"):
        path = run_dir / f"metrics_{split}.json"
        if path.is_file():
            metrics[split] = json.loads(path.read_text())
    items = run.data.items
    popularity = np.argsort(-run.data.popularity(), kind="stable").tolist()
    manifest = write_bundle(out, model=run.built.model, tokenizer=run.built.tokenizer,
                            item_ids=[it.item_id for it in items], sids=run.sids,
                            titles=[it.title for it in items], popularity=popularity, metrics=metrics,
                            extra={"dataset": run.data.info.get("name"), "run": str(run_dir)})
    hist, _ = run.data.eval_examples("test", max_history=run.cfg.prompt.max_history)
    rng = np.random.default_rng(seed)
    sample = [hist[i] for i in rng.choice(len(hist), size=min(check_users, len(hist)), replace=False)]
    checked = check_bundle(out, sample)
    log.info("export check: FAISS top-10 == exact top-10 for %d users", checked)
    return {"bundle": str(out), "model_version": manifest["model_version"], "n_items": manifest["n_items"],
            "dim": manifest["dim"], "checked_users": checked}
