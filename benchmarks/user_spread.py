"""User-vector spread (not a test): how alike a run's user embeddings are, trained and at initialisation.

Prints ONE JSON line with, over the first --users test users, the mean pairwise cosine of the user
embeddings as scored (the model's own normalisation), and the largest share of their squared norm held by
one dimension; once for the run's best checkpoint and once for the same backbone as built before training
(a pretrained checkpoint's own weights, or a preset's random init with the run's seed).

    python benchmarks/user_spread.py --run .cache/quality/smollm2/run-smollm2-135m-lora-... --users 512

A mean cosine near 1 means nearly every user gets the same top-k: a shared direction in the hidden states
(the anisotropy of a pretrained LM) outweighs what tells users apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from model.network.assembly import build_model
from model.network.prompt import PromptVocab, build_prompt, collate
from model.training.run import load_run


def spread(model: torch.nn.Module, vocab: PromptVocab, histories: list[list[int]]) -> dict[str, float]:
    """Mean pairwise cosine of the users' embeddings, and the top dimension's share of the squared norm."""
    model.eval()
    batch = collate([build_prompt(h, vocab) for h in histories], pad_id=vocab.pad_id)
    with torch.inference_mode():
        h = model.user_embeddings(batch).float()  # (U, D)
    unit = torch.nn.functional.normalize(h, dim=1)
    n = len(unit)
    mean_cos = ((unit @ unit.T).sum() - n) / (n * n - n)  # off-diagonal mean
    energy = (h**2).mean(0)  # (D,)
    return {"mean_cosine": round(mean_cos.item(), 4), "top_dim_share": round((energy.max() / energy.sum()).item(), 4)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="a SimGR run directory (simgr train --out)")
    p.add_argument("--users", type=int, default=512, help="the first N test users (at least 2)")
    a = p.parse_args()
    if a.users < 2:
        p.error("--users must be at least 2")
    run = load_run(a.run)
    if run.cfg.method != "simgr":
        p.error(f"{a.run} is a {run.cfg.method} run; user embeddings are SimGR's")
    histories, _ = run.data.eval_examples("test", max_history=run.cfg.prompt.max_history)
    histories = [list(h) for h in histories[: a.users]]
    init = build_model(run.cfg.model, run.cfg.prompt, run.sids, seed=run.cfg.train.seed)
    result = {"run": str(a.run), "backbone": run.cfg.model.backbone, "lora": run.cfg.model.lora,
              "users": len(histories), "trained": spread(run.built.model, run.built.vocab, histories),
              "init": spread(init.model, init.vocab, histories)}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
